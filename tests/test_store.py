"""The store and the run lifecycle on SQLite and PostgreSQL: schema, claims, leases, writes."""

import random
import subprocess
import sys
import threading
from datetime import datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import random_epoch, run_of, submit, submit_many
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from server.core import errors
from server.core.schemas import RunSpec, RunStatus
from server.store import crud, jobs, lifecycle
from server.store.db import Database, alembic_config
from server.store.models import Base, EpochCounts, EpochMetrics, LayerEpochStats, Run, RunLayer

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SPEC = RunSpec(dataset="synthetic", hidden_sizes=[8], epochs=3)


def claim(db, worker="w:1", lease_seconds=60.0):
    with db.write() as session:
        return jobs.claim_run(session, worker, lease_seconds)


def test_initial_migration_creates_exactly_the_models_tables(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
        assert diff == []
        checks = {c["name"]: c["sqltext"] for c in inspect(conn).get_check_constraints("runs")}
    assert set(checks) == {"ck_runs_status", "ck_runs_epochs_done"}
    for status in RunStatus:
        assert repr(status.value) in checks["ck_runs_status"]


@pytest.mark.backends("sqlite")
def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(db):
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_upgrade_is_idempotent(db):
    db.upgrade()
    config = alembic_config(db.engine.url.render_as_string(hide_password=False))
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head


def test_counts_move_to_one_row_per_epoch_and_back(db_url):
    """0002 regroups counts stored one per layer and tolerance; its downgrade restores them."""
    config = alembic_config(db_url)
    command.upgrade(config, "0001")
    engine = create_engine(db_url)
    old = [
        (1, epoch, layer, t, 100 * epoch + 10 * layer + t)
        for epoch in (1, 2)
        for layer in (0, 1)
        for t in (0, 1, 2)
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, status, spec, epochs_done, created_at, attempts,"
                " cancel_requested) VALUES (1, 'succeeded', '{}', 2, :now, 1, false)"
            ),
            {"now": datetime(2026, 11, 25)},
        )
        conn.execute(
            text("INSERT INTO run_layers VALUES (1, :i, :name, 100)"),
            [{"i": i, "name": f"layers.{i}.weight"} for i in (0, 1)],
        )
        conn.execute(
            text("INSERT INTO constancy_counts VALUES (:r, :e, :l, :t, :c)"),
            [{"r": r, "e": e, "l": la, "t": t, "c": c} for r, e, la, t, c in old],
        )
    command.upgrade(config, "0002")
    with engine.connect() as conn:
        rows = conn.execute(select(EpochCounts.epoch, EpochCounts.counts).order_by("epoch")).all()
    assert [(e, c.reshape(2, 3).tolist()) for e, c in rows] == [
        (e, [[100 * e + 10 * la + t for t in range(3)] for la in range(2)]) for e in (1, 2)
    ]
    command.downgrade(config, "0001")
    with engine.connect() as conn:
        back = conn.exec_driver_sql("SELECT * FROM constancy_counts ORDER BY 1, 2, 3, 4").all()
    assert [tuple(r) for r in back] == old
    engine.dispose()


def test_status_column_refuses_unknown_values(db):
    run_id = submit(db, SPEC)
    with pytest.raises(IntegrityError, match="ck_runs_status"), db.write() as session:
        session.execute(text("UPDATE runs SET status = 'paused' WHERE id = :id"), {"id": run_id})


def test_transition_table():
    assert lifecycle.sources(RunStatus.running) == {RunStatus.queued, RunStatus.running}
    assert lifecycle.sources(RunStatus.queued) == {RunStatus.running}
    assert lifecycle.FINISHED == {RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled}
    lifecycle.check("queued", RunStatus.cancelled)
    for finished in lifecycle.FINISHED:
        for target in RunStatus:
            with pytest.raises(lifecycle.InvalidTransition, match=finished.value):
                lifecycle.check(finished.value, target)


def test_claims_take_the_oldest_queued_run_once(db):
    first, second = submit_many(db, SPEC, 2)
    a = claim(db, "w:1")
    b = claim(db, "w:2")
    assert (a.lease.run_id, b.lease.run_id) == (first, second)
    assert a.lease.attempt == 1 and a.spec == SPEC and a.epochs_done == 0
    assert claim(db, "w:3") is None
    run = run_of(db, first)
    assert run.status == "running" and run.worker == "w:1" and run.attempts == 1
    assert run.started_at is not None and run.lease_expires_at > run.started_at


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_can_no_longer_write(db):
    run_id = submit(db, SPEC)
    old = claim(db, "w:1", lease_seconds=-1)  # already lapsed
    new = claim(db, "w:2")
    assert new.lease.run_id == run_id and new.lease.attempt == 2
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.record_epoch(session, old.lease, random_epoch(random.Random(0), 1, [], 4), 60)
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.renew_lease(session, old.lease, 60)
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.release_run(session, old.lease)
    with db.write() as session:
        assert jobs.renew_lease(session, new.lease, 60) is False
    run = run_of(db, run_id)
    assert (run.worker, run.attempts, run.status) == ("w:2", 2, "running")


def test_a_live_lease_is_not_taken_over(db):
    submit(db, SPEC)
    assert claim(db, "w:1") is not None
    assert claim(db, "w:2") is None


def test_epochs_are_written_in_order_with_counts_stats_and_progress(db, play):
    played = play(SPEC.model_dump(), epochs=2, finish=None)
    rng = random.Random(1)
    skipped = random_epoch(rng, 4, played.tensors, 4)
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.record_epoch(session, played.lease, skipped, 60)
    with db.reader() as session:
        run = crud.get_run(session, played.run_id)
        counts = session.scalars(select(EpochCounts.counts).order_by(EpochCounts.epoch)).all()
        epochs = session.scalars(select(EpochMetrics.epoch)).all()
        stat_epochs = session.scalars(select(LayerEpochStats.epoch).distinct()).all()
    assert run.epochs_done == 2 and sorted(epochs) == [1, 2] and sorted(stat_epochs) == [0, 1, 2]
    layers = len(played.tensors)
    assert [c.reshape(layers, -1).tolist() for c in counts] == [e.counts for e in played.epochs]


def test_release_puts_the_run_back_for_a_resume(db, play):
    played = play(SPEC.model_dump(), epochs=1, finish=None)
    with db.write() as session:
        jobs.release_run(session, played.lease)
    run = run_of(db, played.run_id)
    assert run.status == "queued" and run.lease_expires_at is None
    resumed = claim(db, "w:2")
    assert resumed.epochs_done == 1 and resumed.lease.attempt == 2


def test_a_start_at_epoch_0_forgets_stored_epochs_and_says_why(db, play):
    played = play(SPEC.model_dump(), epochs=2, finish=None)
    with db.write() as session:
        jobs.start_training(
            session,
            played.lease,
            start_epoch=0,
            device="cpu",
            tensors=played.tensors,
            initial_variances=[0.5] * len(played.tensors),
            note="restarted from epoch 0",
        )
    with db.reader() as session:
        run = crud.get_run(session, played.run_id)
        left = [
            session.scalar(select(func.count()).select_from(t))
            for t in (EpochMetrics, EpochCounts, LayerEpochStats, RunLayer)
        ]
        variances = session.scalars(select(LayerEpochStats.variance)).all()
    # Only epoch 0 is left: the layers and their initial variances as this start measured them.
    layers = len(played.tensors)
    assert run.epochs_done == 0 and run.note == "restarted from epoch 0"
    assert left == [0, 0, layers, layers] and variances == [0.5] * layers


def test_cancel_queued_is_immediate_running_is_flagged_finished_is_refused(db, play):
    queued = submit(db, SPEC)
    with db.write() as session:
        run = crud.request_cancel(session, queued)
    assert run.status == "cancelled" and run.finished_at is not None
    played = play(SPEC.model_dump(), epochs=1, finish=None)
    with db.write() as session:
        run = crud.request_cancel(session, played.run_id)
    assert run.status == "running" and run.cancel_requested
    with db.write() as session:
        assert jobs.renew_lease(session, played.lease, 60) is True
        jobs.finish_run(session, played.lease, RunStatus.cancelled)
    for run_id in (queued, played.run_id):
        with pytest.raises(lifecycle.InvalidTransition), db.write() as session:
            crud.request_cancel(session, run_id)
    with pytest.raises(errors.RunNotFound), db.write() as session:
        crud.request_cancel(session, 999)


def test_cancel_of_a_run_whose_worker_is_gone_is_immediate(db):
    run_id = submit(db, SPEC)
    dead = claim(db, "w:1", lease_seconds=-1)  # its worker died: the lease has lapsed
    with db.write() as session:
        run = crud.request_cancel(session, run_id)
    assert run.status == "cancelled" and run.lease_expires_at is None
    assert claim(db, "w:2") is None
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.renew_lease(session, dead.lease, 60)


def test_delete_cascades_and_refuses_a_running_run(db, play):
    running = play(SPEC.model_dump(), epochs=1, finish=None)
    with pytest.raises(lifecycle.InvalidTransition, match="running"), db.write() as session:
        crud.delete_run(session, running.run_id)
    with db.write() as session:
        jobs.finish_run(session, running.lease, RunStatus.succeeded)
    with db.write() as session:
        crud.delete_run(session, running.run_id)
    with db.reader() as session:
        for table in (Run, EpochMetrics, EpochCounts, LayerEpochStats, RunLayer):
            assert session.scalar(select(func.count()).select_from(table)) == 0


def test_finished_runs_cannot_be_finished_again(db, play):
    played = play(SPEC.model_dump(), epochs=1)
    with pytest.raises(jobs.LeaseLost), db.write() as session:
        jobs.finish_run(session, played.lease, RunStatus.failed, error="late")
    assert run_of(db, played.run_id).status == "succeeded"


def test_a_read_session_sees_one_snapshot_while_others_write(db, play):
    played = play(SPEC.model_dump(), epochs=1, finish=None)
    with db.reader() as reader:
        assert crud.get_run(reader, played.run_id).epochs_done == 1
        submit(db, SPEC)
        with db.write() as session:
            epoch = random_epoch(random.Random(2), 2, played.tensors, 4)
            jobs.record_epoch(session, played.lease, epoch, 60)
        # The API answers a request from one consistent state, however the workers go on.
        assert reader.scalar(select(func.count()).select_from(Run)) == 1
        assert reader.scalars(select(EpochMetrics.epoch)).all() == [1]
    with db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2


def test_concurrent_claims_take_every_run_exactly_once(db):
    ids = submit_many(db, SPEC, 12)
    start = threading.Barrier(6)
    claimed: list[int] = []

    def worker(name: str) -> None:
        start.wait()
        while (got := claim(db, name)) is not None:
            claimed.append(got.lease.run_id)

    threads = [threading.Thread(target=worker, args=(f"w:{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids
    with db.reader() as session:
        runs = session.scalars(select(Run)).all()
    assert {(r.status, r.attempts) for r in runs} == {("running", 1)}


UPGRADE = """
import sys
from server.store.db import Database, alembic_config
database = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
database.upgrade()
"""


def test_several_processes_upgrading_a_fresh_database_at_once(db_url):
    # What happens when the API and several workers start together on an empty database.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout.readline() == "ready\n", p.stderr.read()
    for p in procs:  # all at once, once every one has its engine
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
    database = Database(db_url)
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    try:
        config = alembic_config(db_url)
        head = ScriptDirectory.from_config(config).get_current_head()
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
                (head,)
            ]
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        database.dispose()
