"""Faults: workers SIGKILLed at every point of an epoch, the API killed during POSTs, a disk
that refuses checkpoints. Real processes on one SQLite file.

A killed run must resume and end with exactly the numbers of an undisturbed run, with no
half-written epoch in the database and only loadable checkpoints on disk; a run whose files
cannot be written must fail with a clear error while its worker carries on.
"""

import random
import signal
import sqlite3
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from conftest import stored_results
from sqlalchemy import func, select

from server.core.runfiles import RunFiles
from server.core.settings import Settings
from server.processes import Processes, wait_for
from server.store.db import Database
from server.store.models import EpochCounts, EpochMetrics, LayerEpochStats, Run, RunLayer
from worker.loop import Worker

# `python -m faulty_worker` is `python -m worker --once` with one fault, chosen by
# DECAYLAB_FAULT=<kind>:<arg>. Each kill is a SIGKILL the worker sends itself at that point.
FAULTY_WORKER = """
import io, os, resource, signal, sys, tempfile, threading

from server.store import jobs
from worker import __main__ as entry
from worker.engine import checkpoint, train

kind, _, arg = os.environ["DECAYLAB_FAULT"].partition(":")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if kind == "after":  # `arg` seconds into training: mostly mid-batch, sometimes anywhere else
    start_training = jobs.start_training

    def started(*args, **kwargs):
        start_training(*args, **kwargs)
        timer = threading.Timer(float(arg), die)
        timer.daemon = True  # a run that ends first lets the worker exit
        timer.start()

    jobs.start_training = started
elif kind == "batch":  # at the `arg`-th batch boundary after the resume: mid-epoch
    epochs = train.Training.epochs

    def counted(self, should_stop):
        polls = iter(range(int(arg) - 1))

        def stop():
            if next(polls, None) is None:
                die()
            return should_stop()

        return epochs(self, stop)

    train.Training.epochs = counted
elif kind == "record":  # the epoch's rows sent to the database, not committed
    record_epoch = jobs.record_epoch

    def record(session, lease, result, lease_seconds):
        record_epoch(session, lease, result, lease_seconds)
        if result.epoch == int(arg):
            session.flush()
            die()

    jobs.record_epoch = record
elif kind in ("checkpoint", "snapshot"):  # half the file in its temp file, not renamed
    name = f"epoch_{int(arg):04d}." + ("pt" if kind == "checkpoint" else "npz")
    atomic_write = checkpoint.atomic_write

    def half_written(path, write):
        if path.name != name:
            return atomic_write(path, write)
        whole = io.BytesIO()
        write(whole)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
        os.write(fd, whole.getvalue()[: whole.tell() // 2])
        os.fsync(fd)
        die()

    checkpoint.atomic_write = half_written
elif kind == "stored":  # the checkpoint renamed into place, the epoch not yet in the database
    save_checkpoint = train.save_checkpoint

    def saved(files, epoch, state):
        save_checkpoint(files, epoch, state)
        if epoch == int(arg):
            die()

    train.save_checkpoint = saved
elif kind == "fsize":  # no file may grow beyond `arg` bytes: a full disk, as far as we can tell
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), int(arg)))

sys.exit(entry.main(["--once"] if kind != "fsize" else []))
"""


@pytest.fixture
def procs(tmp_path: Path) -> Any:
    (tmp_path / "faulty_worker.py").write_text(textwrap.dedent(FAULTY_WORKER))
    processes = Processes(tmp_path, lease_seconds="1", poll_seconds="0.05")
    yield processes
    processes.close()


def start_faulty(procs: Processes, fault: str) -> Any:
    return procs.start_module("faulty_worker", PYTHONPATH=str(procs.root), DECAYLAB_FAULT=fault)


def database(procs: Processes) -> Database:
    return Database(f"sqlite:///{procs.root / 'data' / 'decaylab.db'}")


def assert_consistent(db: Database, files: RunFiles, run_id: int) -> int:
    """Epochs 1..epochs_done each complete (metrics, stats, every count); checkpoints load."""
    with db.reader() as session:
        run = session.get(Run, run_id)
        assert run is not None
        done, spec = run.epochs_done, run.spec

        def per_epoch(table: Any) -> dict[int, int]:
            query = select(table.epoch, func.count()).where(table.run_id == run_id)
            return dict(session.execute(query.group_by(table.epoch)).all())

        layers = session.scalar(select(func.count()).where(RunLayer.run_id == run_id))
        assert per_epoch(EpochMetrics) == {e: 1 for e in range(1, done + 1)}
        assert per_epoch(LayerEpochStats) == {e: layers for e in range(0, done + 1)}
        assert per_epoch(EpochCounts) == {e: 1 for e in range(1, done + 1)}
        shapes = session.scalars(select(EpochCounts.counts).where(EpochCounts.run_id == run_id))
        assert {c.size for c in shapes} <= {layers * len(spec["tolerances"])}
    for path in files.checkpoints.glob("epoch_*.pt"):
        assert torch.load(path, weights_only=True)["epoch"] == int(path.stem[6:])
    if done:  # the epoch to resume from is on disk
        assert files.checkpoint(done).is_file()
    return done


@pytest.mark.slow
def test_killed_workers_resume_to_an_undisturbed_runs_numbers(procs, tiny_spec):
    procs.start_server()
    settings = Settings(data_dir=procs.root / "data")
    db = database(procs)
    epochs = 8
    spec = tiny_spec(epochs=epochs, keep_snapshots=True)
    faulted = procs.api("POST", "/runs", json=spec).json()["id"]
    rng = random.Random(6)
    kills = []
    # Each targeted kill lets one epoch through first, so they strike at epochs 2, 3, 4, 5.
    for kind in ["record", "checkpoint", "stored", "snapshot", "batch", "after"]:
        done = procs.run(faulted)["epochs_done"]
        if kind == "after":  # anywhere in about the next epoch, if the run lasts that long
            seconds = procs.api("GET", f"/runs/{faulted}/metrics").json()["epoch_seconds"]
            fault = f"after:{rng.uniform(0, 1) * sum(seconds) / len(seconds):.3f}"
        elif kind == "batch":  # 9 batches an epoch: 8 training, 1 test pass
            fault = f"batch:{rng.randint(1, 9)}"
        else:
            fault = f"{kind}:{done + 2}"
        worker = start_faulty(procs, fault)
        returncode = worker.wait(timeout=120)
        if returncode == 0:  # the run ended before the fault's moment came
            break
        assert returncode == -signal.SIGKILL, procs.logs()
        kills.append(fault)
        run = procs.run(faulted)
        assert run["status"] == "running" and run["attempts"] == len(kills)
        assert assert_consistent(db, settings.run_files(faulted), faulted) == run["epochs_done"]
    assert len(kills) >= 5, kills

    undisturbed = procs.api("POST", "/runs", json=spec).json()["id"]
    procs.start_worker("--exit-when-idle")  # takes the run over once the dead one's lease lapses
    resumed = procs.wait_finished(faulted)
    assert resumed["status"] == "succeeded", procs.logs()
    assert resumed["attempts"] == len(kills) + 1 and resumed["epochs_done"] == epochs
    assert procs.wait_finished(undisturbed)["attempts"] == 1
    assert stored_results(db, faulted) == stored_results(db, undisturbed)
    for epoch in range(epochs + 1):
        a = np.load(settings.run_files(faulted).snapshot(epoch))
        b = np.load(settings.run_files(undisturbed).snapshot(epoch))
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in b.files)
    assert_consistent(db, settings.run_files(faulted), faulted)
    db.dispose()


@pytest.mark.slow
def test_a_killed_api_loses_no_acknowledged_run(procs, tiny_spec):
    server = procs.start_server()
    spec = tiny_spec(epochs=1, hidden_sizes=[8], train_size=64, test_size=32)
    acknowledged: list[int] = []
    refused: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=procs.url, timeout=10, headers=procs.headers()) as http:
            while not stop.is_set():
                try:
                    response = http.post("/runs", json=spec)
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                else:
                    refused.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acknowledged) >= 8 or bool(refused), 60, "8 acknowledged POSTs")
    server.send_signal(signal.SIGKILL)  # with POSTs in flight
    server.wait()
    stop.set()
    for thread in threads:
        thread.join()
    assert not refused

    db_file = procs.root / "data" / "decaylab.db"
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    procs.start_server()
    listed = procs.api("GET", "/runs", params={"limit": 1000}).json()
    ids = {run["id"] for run in listed["runs"]}
    assert set(acknowledged) <= ids  # some more may have committed unanswered
    assert all(run["status"] == "queued" for run in listed["runs"])
    procs.start_worker("--exit-when-idle").wait(timeout=120)
    statuses = {procs.run(run_id)["status"] for run_id in ids}
    assert statuses == {"succeeded"}, procs.logs()


@pytest.mark.slow
def test_a_full_disk_fails_the_run_with_a_clear_error_and_the_worker_goes_on(procs, tiny_spec):
    procs.start_server()
    # Its first checkpoint is about 6 MB; the database's files stay far below the limit.
    run_id = procs.api("POST", "/runs", json=tiny_spec(hidden_sizes=[256])).json()["id"]
    worker = start_faulty(procs, f"fsize:{2 * 2**20}")
    run = procs.wait_finished(run_id)
    assert run["status"] == "failed" and run["epochs_done"] == 0
    assert run["error"].startswith("CheckpointWriteError: cannot write the checkpoint of epoch 1")
    assert "File too large" in run["error"]
    assert worker.poll() is None  # not dead: polling for the next run
    run_dir = Settings(data_dir=procs.root / "data").run_files(run_id).root
    assert not [p for p in run_dir.rglob("*") if p.is_file()]  # the partial file is gone
    # The next run that fits goes through on the same worker.
    small = procs.api("POST", "/runs", json=tiny_spec(hidden_sizes=[4], epochs=1)).json()["id"]
    assert procs.wait_finished(small)["status"] == "succeeded", procs.logs()


def test_an_unwritable_run_directory_fails_the_run_once(settings, db, client, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec()).json()["id"]
    # A file where the checkpoint folder belongs: mkdir fails as it would on a read-only disk
    # (chmod does not stop root, which the tests may run as).
    blocked = settings.run_files(run_id).root / "checkpoints"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")
    Worker(settings, db).run(exit_when_idle=True)
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "failed" and run["attempts"] == 1
    assert run["error"].startswith("CheckpointWriteError: cannot write the checkpoint of epoch 1")
    assert str(blocked.parent) in run["error"]
