"""Workers on several machines: one database, one shared artifact directory (or not).

In-process workers with their own data directories stand for machines; then real processes: one
API and four workers on PostgreSQL, undisturbed and with a worker killed mid-run.
"""

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_of, stored_results, submit
from sqlalchemy import select

from server.core.settings import Settings
from server.processes import Processes, wait_for
from server.store.db import Database
from server.store.models import EpochMetrics, Run
from worker.loop import Worker


def machine(settings: Settings, root: Path, artifact_dir: Path) -> Settings:
    """The settings of a worker on another machine: its own disk, the same database."""
    return settings.model_copy(update={"data_dir": root / "data", "artifact_dir": artifact_dir})


def interrupted(db: Database, settings: Settings, run_id: int, epochs: int) -> None:
    """Train the run on a worker with ``settings`` until ``epochs`` are stored; stop it there."""
    worker = Worker(settings, db, name="first:1")

    def watch() -> None:
        while run_of(db, run_id).epochs_done < epochs:
            time.sleep(0.02)
        worker.request_shutdown()

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker.run()
    watcher.join()
    assert run_of(db, run_id).status == "queued"


@pytest.mark.backends("postgresql")  # several machines share a database server
def test_a_worker_on_another_machine_resumes_from_the_shared_artifact_dir_or_restarts(
    db, settings, tiny_spec, tmp_path
):
    shared = tmp_path / "shared"
    spec = tiny_spec(epochs=5, hidden_sizes=[16], train_size=256)
    undisturbed = submit(db, spec)
    Worker(machine(settings, tmp_path / "a", shared), db).run(exit_when_idle=True)

    # The second machine mounts the shared artifact directory: it picks up the checkpoint.
    resumed = submit(db, spec)
    interrupted(db, machine(settings, tmp_path / "a", shared), resumed, 2)
    Worker(machine(settings, tmp_path / "b", shared), db, name="second:1").run(once=True)
    run = run_of(db, resumed)
    assert (run.status, run.attempts, run.worker, run.note) == ("succeeded", 2, "second:1", None)

    # This one has a disk of its own instead: no checkpoint there, so it starts again.
    restarted = submit(db, spec)
    interrupted(db, machine(settings, tmp_path / "a", shared), restarted, 2)
    alone = machine(settings, tmp_path / "c", tmp_path / "c" / "artifacts")
    Worker(alone, db, name="third:1").run(once=True)
    run = run_of(db, restarted)
    assert (run.status, run.attempts, run.worker) == ("succeeded", 2, "third:1")
    assert run.note.startswith("restarted from epoch 0 (was at epoch ")
    assert "by worker third:1" in run.note
    assert str(alone.run_files(restarted).checkpoints) in run.note
    assert "DECAYLAB_ARTIFACT_DIR" in run.note

    expected = stored_results(db, undisturbed)
    assert stored_results(db, resumed) == expected
    assert stored_results(db, restarted) == expected
    assert alone.run_files(restarted).checkpoint(5).is_file()


# --- real processes on PostgreSQL -----------------------------------------------------------

WORKERS = 4
EPOCHS = 3
LONG = 12  # epochs of the runs a worker is killed in
SPEC = {"dataset": "synthetic", "hidden_sizes": [16], "train_size": 256, "test_size": 128}


@dataclass
class Cluster:
    procs: Processes
    workers: list[subprocess.Popen[bytes]]
    db: Database  # the test's own view of the database the processes share


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory) -> Iterator[Cluster]:
    """One API and four `python -m worker` processes on a fresh PostgreSQL database."""
    url = postgres.create()
    procs = Processes(tmp_path_factory.mktemp("cluster"), database_url=url, lease_seconds="3")
    db = Database(url)
    try:
        procs.start_server()
        workers = [procs.start_worker() for _ in range(WORKERS)]
        # Each logs "worker NAME polling URL" once it is ready to claim.
        wait_for(lambda: procs.logs().count(" polling ") == WORKERS, 120, "workers", procs.logs())
        yield Cluster(procs, workers, db)
    finally:
        procs.close()
        db.dispose()
        postgres.drop(url)


def stored_epochs(db: Database, run_id: int) -> list[int]:
    with db.reader() as session:
        query = select(EpochMetrics.epoch).where(EpochMetrics.run_id == run_id)
        return sorted(session.scalars(query).all())


def submit_all(procs: Processes, specs: list[dict]) -> list[int]:
    return [procs.api("POST", "/runs", json=spec).json()["id"] for spec in specs]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_dozen_runs_on_four_workers_each_run_exactly_once(cluster):
    procs = cluster.procs
    ids = submit_all(procs, [SPEC | {"epochs": EPOCHS, "seed": i} for i in range(12)])
    runs = [procs.wait_finished(run_id) for run_id in ids]
    assert {(r["status"], r["attempts"], r["epochs_done"]) for r in runs} == {
        ("succeeded", 1, EPOCHS)
    }, procs.logs()
    for run_id in ids:
        assert stored_epochs(cluster.db, run_id) == list(range(1, EPOCHS + 1))
    assert len({r["worker"] for r in runs}) > 1


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_workers_run_is_taken_over_and_ends_as_if_undisturbed(cluster):
    procs = cluster.procs
    long = SPEC | {"epochs": LONG, "train_size": 1024}
    twins = submit_all(procs, [long, long])
    others = submit_all(procs, [SPEC | {"epochs": EPOCHS, "seed": i} for i in range(10)])

    def twin_in_the_middle() -> tuple[int, str] | None:
        with cluster.db.reader() as session:
            for run in session.scalars(select(Run).where(Run.id.in_(twins))):
                if run.status == "running" and 2 <= run.epochs_done < LONG:
                    return run.id, run.worker
        return None

    victim, worker = wait_for(twin_in_the_middle, 120, "a long run at epoch 2", procs.logs())
    (killed,) = [w for w in cluster.workers if w.pid == int(worker.rsplit(":", 1)[1])]
    procs.stop(killed, signal.SIGKILL)
    assert procs.run(victim)["epochs_done"] < LONG

    runs = {run_id: procs.wait_finished(run_id) for run_id in twins + others}
    assert {r["status"] for r in runs.values()} == {"succeeded"}, procs.logs()
    taken_over = runs.pop(victim)
    assert taken_over["attempts"] == 2 and taken_over["worker"] != worker
    assert {r["attempts"] for r in runs.values()} == {1}
    assert stored_epochs(cluster.db, victim) == list(range(1, LONG + 1))
    (twin,) = set(twins) - {victim}
    assert stored_results(cluster.db, victim) == stored_results(cluster.db, twin)
