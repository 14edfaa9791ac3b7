"""The worker loop: claim a run, train it epoch by epoch into the store, repeat.

While a run trains, a heartbeat thread renews its lease and watches for a cancel request; the
engine polls a stop flag between batches. Each epoch is stored in one transaction as soon as its
checkpoint is on disk, and only while the lease is still ours. A worker that dies leaves a lease
that lapses; the next claim resumes the run from ``epochs_done`` (the database is the truth).
"""

import logging
import os
import socket
import threading
from types import TracebackType

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from server.core.runfiles import BucketUnavailable
from server.core.schemas import RunStatus
from server.core.settings import Settings
from server.store import jobs
from server.store.db import Database
from worker.engine.devices import DeviceUnavailable, resolve_device
from worker.engine.fetch import DataUnavailable
from worker.engine.train import Training, TrainingStopped, resume_point

log = logging.getLogger("decaylab.worker")
# Failures a user causes and fixes by a setting or a file (data missing, downloads off, no GPU):
# logged as one line at WARNING; anything else is a bug and keeps its traceback.
EXPECTED_FAILURES = (DataUnavailable, DeviceUnavailable)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Renews a held run's lease in a thread; sets ``stop`` on a cancel request or a lost lease."""

    def __init__(
        self,
        db: Database,
        lease: jobs.Lease,
        lease_seconds: float,
        interval: float,
        stop: threading.Event,
    ) -> None:
        self.cancel_requested = False
        self.lost = False
        self._db, self._lease, self._lease_seconds = db, lease, lease_seconds
        self._interval, self._stop = interval, stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._interval):
            try:
                with self._db.write() as session:
                    cancel = jobs.renew_lease(session, self._lease, self._lease_seconds)
            except jobs.LeaseLost:
                self.lost = True
                self._stop.set()
                return
            except SQLAlchemyError:
                # A slow or briefly unavailable database: keep training, try again next beat.
                log.warning("run %d: lease renewal failed", self._lease.run_id, exc_info=True)
                continue
            if cancel:
                self.cancel_requested = True
                self._stop.set()


class Worker:
    def __init__(self, settings: Settings, db: Database, name: str | None = None) -> None:
        self.settings = settings
        self.db = db
        self.name = name or worker_name()
        # Set by SIGTERM/SIGINT: hand the current run back and leave the loop.
        self.shutdown = threading.Event()

    def request_shutdown(self, *_signal: object) -> None:
        self.shutdown.set()

    def run(self, *, once: bool = False, exit_when_idle: bool = False) -> None:
        """Claim and train runs until shut down (``once``: one run; or until none is waiting)."""
        log.info(
            "worker %s polling %s; artifacts in %s",
            self.name,
            self.db.engine.url,
            self.settings.artifact_url or self.settings.artifact_dir,
        )
        while not self.shutdown.is_set():
            try:
                with self.db.write() as session:
                    claim = jobs.claim_run(session, self.name, self.settings.lease_seconds)
            except SQLAlchemyError:
                log.warning("claiming failed; retrying", exc_info=True)
                claim = None
            if claim is None:
                if exit_when_idle:
                    return
                self.shutdown.wait(self.settings.poll_seconds)
                continue
            self.process(claim)
            if once:
                return

    def process(self, claim: jobs.Claim) -> None:
        lease = claim.lease
        log.info(
            "run %d: claimed (attempt %d) after epoch %d",
            lease.run_id,
            lease.attempt,
            claim.epochs_done,
        )
        if claim.cancel_requested:  # cancelled while its previous worker was gone
            self._settle(lease, RunStatus.cancelled)
            return
        if lease.attempt > self.settings.max_attempts:
            error = (
                f"given up after {lease.attempt - 1} claims that did not finish (workers died or"
                f" were stopped at epoch {claim.epochs_done}); DECAYLAB_MAX_ATTEMPTS allows"
                f" {self.settings.max_attempts}"
            )
            self._settle(lease, RunStatus.failed, error=error)
            return
        stop = threading.Event()
        interval = min(self.settings.lease_seconds / 3, self.settings.poll_seconds)
        with Heartbeat(self.db, lease, self.settings.lease_seconds, interval, stop) as heartbeat:
            try:
                training = self._open(claim)
                for result in training.epochs(lambda: stop.is_set() or self.shutdown.is_set()):
                    with self.db.write() as session:
                        jobs.record_epoch(session, lease, result, self.settings.lease_seconds)
                    log.info("run %d: epoch %d stored", lease.run_id, result.epoch)
            except TrainingStopped:
                if heartbeat.lost:
                    log.warning("run %d: taken over by another worker; stopped", lease.run_id)
                elif heartbeat.cancel_requested:
                    self._settle(lease, RunStatus.cancelled)
                else:
                    self._settle(lease, RunStatus.queued)
                return
            except jobs.LeaseLost:
                log.warning("run %d: taken over by another worker; stopped", lease.run_id)
                return
            except BucketUnavailable:
                # The bucket failed even after retries with back-off; the epoch was not recorded,
                # so the run is whole up to its last stored epoch. Hand it back: the next claim
                # (here or elsewhere) resumes it, and max_attempts ends a bucket that stays down.
                log.warning(
                    "run %d: bucket unavailable; handing it back", lease.run_id, exc_info=True
                )
                self._settle(lease, RunStatus.queued)
                return
            except OperationalError:
                # The database went away or stalled mid-run: not the run's fault. Hand it back;
                # if even that fails its lease lapses, and it resumes from its last stored epoch.
                log.warning("run %d: database error; handing it back", lease.run_id, exc_info=True)
                self._settle(lease, RunStatus.queued)
                return
            except EXPECTED_FAILURES as exc:
                # The run cannot go on here and the message says why and what to change: one
                # line, not a traceback.
                log.warning("run %d failed: %s: %s", lease.run_id, type(exc).__name__, exc)
                self._settle(lease, RunStatus.failed, error=f"{type(exc).__name__}: {exc}")
                return
            except Exception as exc:
                log.exception("run %d failed", lease.run_id)
                self._settle(lease, RunStatus.failed, error=f"{type(exc).__name__}: {exc}")
                return
        self._settle(lease, RunStatus.succeeded)

    def _open(self, claim: jobs.Claim) -> Training:
        """The engine for the claimed run, from where ``resume_point`` says it starts."""
        lease = claim.lease
        files = self.settings.run_files(lease.run_id)
        device = resolve_device(self.settings.device)
        start = resume_point(claim.spec, files, claim.epochs_done, device)
        note = None
        if start.restarted_because:
            # E.g. a worker on another machine without the shared artifact directory.
            note = (
                f"restarted from epoch 0 (was at epoch {claim.epochs_done}) by worker {self.name}:"
                f" {start.restarted_because} (workers on several machines need one shared"
                " DECAYLAB_ARTIFACT_DIR, or a bucket: DECAYLAB_ARTIFACT_URL)"
            )
            log.warning("run %d: %s", lease.run_id, note)
        engine = Training(
            claim.spec,
            files=files,
            data_dir=self.settings.data_dir,
            device=device,
            start=start,
            allow_download=self.settings.allow_download,
        )
        with self.db.write() as session:
            jobs.start_training(
                session,
                lease,
                start_epoch=start.epoch,
                device=engine.device,
                numerics=engine.numerics,
                tensors=engine.tensors,
                initial_variances=engine.initial_variances,
                note=note,
                spectrum_tolerances=engine.spectrum_tolerances,
            )
        return engine

    def _settle(self, lease: jobs.Lease, status: RunStatus, error: str | None = None) -> None:
        """End the held run with ``status``, or hand it back to the queue (``queued``)."""
        try:
            with self.db.write() as session:
                if status == RunStatus.queued:
                    jobs.release_run(session, lease)
                else:
                    jobs.finish_run(session, lease, status, error)
        except (jobs.LeaseLost, SQLAlchemyError):
            # Not ours any more, or no database: either way its lease lapses and the run moves on.
            log.warning("run %d: could not become %s", lease.run_id, status.value, exc_info=True)
            return
        log.info("run %d: %s", lease.run_id, status.value)
