"""Run ids: never handed out twice (SQLite AUTOINCREMENT, PostgreSQL sequences), 64-bit on every
backend, and migration 0004 keeps every row of a database made before it."""

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from server.store.db import Database, alembic_config
from server.store.models import Run

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def test_a_deleted_runs_id_is_never_handed_out_again(client, tiny_spec):
    first = client.post("/runs", json=tiny_spec()).json()["id"]
    second = client.post("/runs", json=tiny_spec()).json()["id"]
    assert client.delete(f"/runs/{second}").status_code == 204
    third = client.post("/runs", json=tiny_spec()).json()["id"]
    assert third > second > first
    # Deleting every run does not start the count again either.
    for run_id in (first, third):
        assert client.delete(f"/runs/{run_id}").status_code == 204
    assert client.post("/runs", json=tiny_spec()).json()["id"] > third


@pytest.mark.parametrize("run_id", [2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1])
def test_every_admitted_id_is_a_404_not_a_500(lenient, run_id):
    for path in (f"/runs/{run_id}", f"/runs/{run_id}/constancy", f"/compare?runs={run_id}"):
        response = lenient.get(path)
        assert response.status_code == 404, (path, response.text)
    assert lenient.delete(f"/runs/{run_id}").status_code == 404


def test_ids_past_32_bits_are_stored(db: Database, tiny_spec, client):
    # As a long-lived database would get them: the next id after a large one.
    with db.write() as session:
        session.add(Run(id=2**40, status="queued", spec=tiny_spec(), name="big"))
        if db.engine.dialect.name == "postgresql":
            session.execute(text(f"SELECT setval('runs_id_seq', {2**40})"))
    created = client.post("/runs", json=tiny_spec())
    assert created.status_code == 201, created.text
    assert created.json()["id"] == 2**40 + 1
    assert client.get(f"/runs/{2**40}").json()["name"] == "big"


def test_migration_0004_keeps_runs_and_their_results(settings, play, tiny_spec, db_url):
    """A database at 0001 with a finished run and a deleted one: after 0004 the rows and their
    children are all there, and the deleted id stays retired."""
    engine = create_engine(db_url)
    config = alembic_config(db_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        for run_id in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO runs (id, status, spec, epochs_done, created_at, attempts,"
                    " cancel_requested) VALUES (:id, 'succeeded', '{}', 1, '2026-01-01', 1,"
                    " false)"
                ),
                {"id": run_id},
            )
            conn.execute(
                text("INSERT INTO epoch_metrics VALUES (:id, 1, 2.3, 0.1, 2.3, 0.1, 0.5)"),
                {"id": run_id},
            )
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('runs_id_seq', 2)"))
        conn.execute(text("DELETE FROM epoch_metrics WHERE run_id = 2"))
        conn.execute(text("DELETE FROM runs WHERE id = 2"))
    engine.dispose()

    database = Database(db_url)
    database.upgrade()
    with database.reader() as session:
        assert session.execute(text("SELECT id FROM runs")).scalars().all() == [1]
        assert session.execute(text("SELECT run_id FROM epoch_metrics")).scalars().all() == [1]
    with database.write() as session:
        run = Run(status="queued", spec=tiny_spec())
        session.add(run)
        session.flush()
        # SQLite's plain rowid would hand out 2 again: AUTOINCREMENT remembers it was used.
        assert run.id == 3
    columns = {c["name"]: c for c in inspect(database.engine).get_columns("runs")}
    assert "numerics" in columns
    if engine.dialect.name == "postgresql":
        assert str(columns["id"]["type"]) == "BIGINT"
    database.dispose()
