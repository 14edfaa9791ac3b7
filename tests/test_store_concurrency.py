"""Several worker processes and API-like threads on one database (an SQLite file, or PostgreSQL):
no "database is locked", every run claimed exactly once."""

import multiprocessing
import queue
import random
import threading

import pytest
from conftest import random_epoch

from server.core import records
from server.core.schemas import RunSpec, RunStatus
from server.store import crud, jobs
from server.store.db import Database
from server.views import analysis

# Slow: several processes contend for one database for seconds.
pytestmark = [pytest.mark.slow, pytest.mark.backends("sqlite", "postgresql")]

SPEC = RunSpec(dataset="synthetic", hidden_sizes=[8], epochs=2, tolerances=[0, 0.1])
TENSORS = [
    records.TensorInfo(0, "layers.0.weight", 24),
    records.TensorInfo(1, "layers.1.weight", 80),
]


def worker_process(url: str, name: str, submitting_done, claimed) -> None:
    """A pretend worker: claims runs and writes their epochs until the queue stays empty."""
    db = Database(url)
    rng = random.Random(name)
    while True:
        with db.write() as session:
            claim = jobs.claim_run(session, name, lease_seconds=60)
        if claim is None:
            if submitting_done.is_set():
                break
            continue
        claimed.put(claim.lease.run_id)
        with db.write() as session:
            jobs.start_training(
                session,
                claim.lease,
                start_epoch=0,
                device="cpu",
                tensors=TENSORS,
                initial_variances=[0.1, 0.2],
            )
        for epoch in range(1, SPEC.epochs + 1):
            with db.write() as session:
                jobs.record_epoch(session, claim.lease, random_epoch(rng, epoch, TENSORS, 2), 60)
        with db.write() as session:
            jobs.finish_run(session, claim.lease, RunStatus.succeeded)
    db.dispose()


def test_workers_and_api_share_one_database_without_lock_errors(db, settings):
    url = settings.database_url
    with db.write() as session:
        for _ in range(20):
            crud.create_run(session, SPEC)
    ctx = multiprocessing.get_context("spawn")
    submitting_done, claimed = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=worker_process, args=(url, f"w:{i}", submitting_done, claimed))
        for i in range(3)
    ]
    for w in workers:
        w.start()
    errors: list[Exception] = []
    reads_done = threading.Event()

    def api_reads() -> None:
        try:
            while not reads_done.is_set():
                with db.reader() as session:
                    _, runs = crud.list_runs(session, None, 100, 0)
                    for run in runs[:5]:
                        analysis.constancy_all(session, run)
                        analysis.metrics(session, run)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    readers = [threading.Thread(target=api_reads) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        for _ in range(20):  # API writes while the workers write
            with db.write() as session:
                crud.create_run(session, SPEC)
    finally:
        submitting_done.set()
    for w in workers:
        w.join(timeout=120)
    reads_done.set()
    for r in readers:
        r.join()
    assert errors == []
    assert [w.exitcode for w in workers] == [0, 0, 0]
    ids = []
    while True:
        try:
            ids.append(claimed.get(timeout=1))
        except queue.Empty:
            break
    assert sorted(ids) == list(range(1, 41))
    with db.reader() as session:
        total, runs = crud.list_runs(session, None, 100, 0)
    assert total == 40
    assert {(r.status, r.attempts, r.epochs_done) for r in runs} == {("succeeded", 1, 2)}
