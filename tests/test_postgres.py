"""What only PostgreSQL does: the one-statement claim that skips locked rows, and the server
ending a write transaction whose client froze (a worker machine gone mid-transaction)."""

import time

import pytest
from conftest import submit, submit_many
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

import server.store.db
from server.core.schemas import RunSpec, RunStatus
from server.store import crud, jobs

pytestmark = pytest.mark.backends("postgresql")

SPEC = RunSpec(dataset="synthetic", hidden_sizes=[8], epochs=3)


def test_a_claim_is_one_update_that_skips_locked_rows(db):
    submit(db, SPEC)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with db.write() as session:
        assert jobs.claim_run(session, "w:1", 60) is not None
    (claim,) = [s for s in statements if "runs" in s]
    sql = " ".join(claim.split())
    assert sql.startswith("UPDATE runs SET status=")
    assert "WHERE runs.id = (SELECT runs.id FROM runs WHERE" in sql
    assert "ORDER BY runs.priority DESC, runs.id LIMIT" in sql and "FOR UPDATE SKIP LOCKED)" in sql
    assert "RETURNING" in sql


def test_a_claim_in_progress_neither_blocks_nor_shares_its_run(db):
    first, second = submit_many(db, SPEC, 2)
    with db.writer() as holding:
        held = jobs.claim_run(holding, "w:1", 60)  # not committed yet: its row stays locked
        started = time.monotonic()
        with db.write() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))  # fail rather than hang
            other = jobs.claim_run(session, "w:2", 60)
        assert time.monotonic() - started < 1
        assert (held.lease.run_id, other.lease.run_id) == (first, second)
        holding.commit()
    with db.write() as session:
        assert jobs.claim_run(session, "w:3", 60) is None


def test_a_stalled_write_transaction_is_ended_so_its_run_can_be_claimed(db, monkeypatch):
    monkeypatch.setattr(server.store.db, "STALLED_WRITE_SECONDS", 0.5)
    run_id = submit(db, SPEC)
    frozen = db.writer()
    # A worker that claimed and then froze before committing: the run's row stays locked.
    assert jobs.claim_run(frozen, "frozen:1", 60).lease.run_id == run_id
    with db.write() as session:
        assert jobs.claim_run(session, "w:2", 60) is None

    def claim_again() -> jobs.Claim | None:
        with db.write() as session:
            return jobs.claim_run(session, "w:2", 60)

    deadline = time.monotonic() + 10
    while (claim := claim_again()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert claim is not None and claim.lease.run_id == run_id and claim.lease.attempt == 1
    with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
        frozen.commit()  # the server ended the frozen transaction: nothing of it was kept
    frozen.close()
    with db.reader() as session:
        run = crud.get_run(session, run_id)
    assert (run.status, run.worker, run.attempts) == (RunStatus.running.value, "w:2", 1)
