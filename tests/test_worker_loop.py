"""The worker loop in-process with the real engine on tiny synthetic runs."""

import re
import shutil
import threading
import time
from datetime import timedelta

import pytest
from conftest import run_of, stored_results, submit
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from server.store import crud, jobs
from server.store.models import Run, utcnow
from worker.loop import Worker


def when_epochs_done(db, run_id: int, epochs: int, then, timeout: float = 60) -> threading.Thread:
    """Call ``then()`` from a thread once the run has stored ``epochs`` epochs."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while run_of(db, run_id).epochs_done < epochs and time.monotonic() < deadline:
            time.sleep(0.02)
        then()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_a_run_trains_to_succeeded_with_every_epoch_stored(db, settings, tiny_spec):
    run_id = submit(db, tiny_spec(epochs=3, keep_snapshots=True))
    Worker(settings, db, name="host:1").run(exit_when_idle=True)
    run = run_of(db, run_id)
    assert (run.status, run.epochs_done, run.attempts, run.worker) == ("succeeded", 3, 1, "host:1")
    assert run.device == "cpu" and run.error is None and run.finished_at >= run.started_at
    assert run.lease_expires_at is None
    results = stored_results(db, run_id)
    assert results["metrics"]["epochs"] == [1, 2, 3]
    assert all(0 <= a <= 1 for a in results["metrics"]["test_accuracy"])
    assert results["weights"]["epochs"] == [0, 1, 2, 3]
    for view in results["constancy"]:
        assert view["epochs"] == [1, 2, 3]
        assert [la["name"] for la in view["layers"]] == ["layers.0.weight", "layers.1.weight"]
        assert all(0 <= p <= 100 for la in view["layers"] for p in la["percent"])
    for epoch in range(4):
        assert settings.run_files(run_id).snapshot(epoch).is_file()


def test_a_failing_run_ends_failed_and_the_worker_goes_on(db, settings, tiny_spec):
    # No CIFAR-10 files and downloads off: the engine cannot load the data.
    broken = submit(db, tiny_spec(dataset="cifar10"))
    fine = submit(db, tiny_spec(epochs=1))
    Worker(settings, db).run(exit_when_idle=True)
    run = run_of(db, broken)
    assert run.status == "failed" and run.finished_at is not None
    # Readable: the exception's type, then its message naming where the files should be.
    assert re.fullmatch(r"\w+: .*cifar-10-batches-py.*", run.error)
    assert run_of(db, fine).status == "succeeded"


@pytest.mark.backends("sqlite", "postgresql")
def test_cancel_stops_a_running_run_between_batches(db, settings, tiny_spec):
    run_id = submit(db, tiny_spec(epochs=200))

    def cancel() -> None:
        with db.write() as session:
            crud.request_cancel(session, run_id)

    watcher = when_epochs_done(db, run_id, 1, cancel)
    Worker(settings, db).run(once=True)
    watcher.join()
    run = run_of(db, run_id)
    assert run.status == "cancelled" and run.cancel_requested and run.finished_at
    assert 1 <= run.epochs_done < 200


@pytest.fixture
def undisturbed(db, settings, tiny_spec):
    """The results of a run of ``tiny_spec(epochs=6)`` left alone, to compare resumed runs with."""
    run_id = submit(db, tiny_spec(epochs=6))
    Worker(settings, db).run(exit_when_idle=True)
    assert run_of(db, run_id).status == "succeeded"
    return stored_results(db, run_id)


def interrupt_after_two_epochs(db, settings, spec: dict) -> int:
    """Train ``spec`` until its second epoch is stored, then shut the worker down (SIGTERM)."""
    run_id = submit(db, spec)
    worker = Worker(settings, db, name="host:1")
    watcher = when_epochs_done(db, run_id, 2, worker.request_shutdown)
    worker.run()
    watcher.join()
    return run_id


@pytest.mark.backends("sqlite", "postgresql")
def test_shutdown_hands_the_run_back_and_another_worker_finishes_it_identically(
    db, settings, tiny_spec, undisturbed
):
    run_id = interrupt_after_two_epochs(db, settings, tiny_spec(epochs=6))
    released = run_of(db, run_id)
    assert released.status == "queued" and released.lease_expires_at is None
    assert 2 <= released.epochs_done < 6
    Worker(settings, db, name="host:2").run(exit_when_idle=True)
    run = run_of(db, run_id)
    assert (run.status, run.attempts, run.worker, run.note) == ("succeeded", 2, "host:2", None)
    assert stored_results(db, run_id) == undisturbed


def test_a_missing_checkpoint_restarts_from_epoch_zero_with_a_note(
    db, settings, tiny_spec, undisturbed
):
    run_id = interrupt_after_two_epochs(db, settings, tiny_spec(epochs=6))
    shutil.rmtree(settings.run_files(run_id).root / "checkpoints")
    Worker(settings, db).run(exit_when_idle=True)
    run = run_of(db, run_id)
    assert run.status == "succeeded" and run.attempts == 2
    assert run.note.startswith("restarted from epoch 0") and "checkpoint" in run.note
    assert stored_results(db, run_id) == undisturbed


@pytest.mark.backends("sqlite", "postgresql")
def test_a_worker_whose_run_was_taken_over_stops_without_writing(db, settings, tiny_spec):
    run_id = submit(db, tiny_spec(epochs=200))
    taken_at: list[int] = []

    def take_over() -> None:
        # What another worker does once this one's lease has lapsed.
        with db.write() as session:
            lapsed = utcnow() - timedelta(seconds=1)
            session.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=lapsed))
            assert jobs.claim_run(session, "other:1", lease_seconds=600) is not None
        taken_at.append(run_of(db, run_id).epochs_done)

    watcher = when_epochs_done(db, run_id, 1, take_over)
    Worker(settings, db, name="host:1").run(once=True)
    watcher.join()
    run = run_of(db, run_id)
    assert (run.status, run.worker, run.attempts) == ("running", "other:1", 2)
    assert run.epochs_done == taken_at[0]


def test_a_run_whose_workers_keep_dying_is_failed_after_max_attempts(db, settings, tiny_spec):
    run_id = submit(db, tiny_spec(epochs=2))
    settings.max_attempts = 3
    for attempt in range(1, 4):
        # A worker claims the run and dies at once: its lease lapses.
        with db.write() as session:
            assert jobs.claim_run(session, f"dead:{attempt}", lease_seconds=0.001) is not None
        time.sleep(0.01)
    Worker(settings, db, name="host:1").run(exit_when_idle=True)
    run = run_of(db, run_id)
    assert (run.status, run.attempts, run.epochs_done) == ("failed", 4, 0)
    assert "given up after 3 claims" in run.error and "DECAYLAB_MAX_ATTEMPTS" in run.error
    # Below the cap the same history still trains to the end.
    other = submit(db, tiny_spec(epochs=2))
    with db.write() as session:
        assert jobs.claim_run(session, "dead:9", lease_seconds=0.001) is not None
    time.sleep(0.01)
    Worker(settings, db, name="host:1").run(exit_when_idle=True)
    assert run_of(db, other).status == "succeeded"


def test_a_database_outage_mid_run_hands_the_run_back_instead_of_failing_it(
    db, settings, tiny_spec, undisturbed, monkeypatch
):
    run_id = submit(db, tiny_spec(epochs=6))
    record_epoch = jobs.record_epoch

    def outage_at_epoch_3(session, lease, result, lease_seconds):
        if result.epoch == 3:
            raise OperationalError("INSERT …", {}, Exception("server closed the connection"))
        record_epoch(session, lease, result, lease_seconds)

    monkeypatch.setattr(jobs, "record_epoch", outage_at_epoch_3)
    Worker(settings, db, name="host:1").run(once=True)
    released = run_of(db, run_id)
    assert (released.status, released.epochs_done, released.error) == ("queued", 2, None)
    monkeypatch.setattr(jobs, "record_epoch", record_epoch)
    Worker(settings, db, name="host:2").run(exit_when_idle=True)
    run = run_of(db, run_id)
    assert (run.status, run.attempts) == ("succeeded", 2)
    assert stored_results(db, run_id) == undisturbed
