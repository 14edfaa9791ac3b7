"""Writing runs: what the API does to them and what a worker does while it holds one.

Functions take a Session and leave committing to the caller (one transaction per call site).
Worker writes are guarded by the worker's ``Lease``: each is a conditional UPDATE that changes
nothing once another worker has taken the run over, and then raises ``LeaseLost``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import (
    ColumnElement,
    Update,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from server import lifecycle
from server.db import lock_for_claim
from server.models import (
    ConstancyCount,
    EpochMetrics,
    LayerEpochStats,
    Run,
    RunLayer,
    UTCDateTime,
    utcnow,
)
from server.schemas import RunSpec, RunStatus


class RunNotFound(LookupError):
    """No run with that id (the API answers 404)."""


class LeaseLost(Exception):
    """The worker no longer holds the run: it was taken over, cancelled away or deleted."""


class TensorLike(Protocol):
    index: int
    name: str
    parameters: int


class EpochLike(Protocol):
    """One finished epoch as the engine reports it (``worker.engine.train.EpochResult``)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    epoch_seconds: float
    counts: list[list[int]]
    variances: list[float]


# --- the API's side ------------------------------------------------------------------------


def create_run(session: Session, spec: RunSpec) -> Run:
    run = Run(name=spec.name, spec=spec.model_dump(mode="json"), status=RunStatus.queued.value)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int, *, for_update: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if for_update:
        # PostgreSQL: holds off a worker's claim until this transaction ends (SQLite: no-op).
        query = query.with_for_update()
    run = session.scalars(query).one_or_none()
    if run is None:
        raise RunNotFound(f"run {run_id} not found")
    return run


def list_runs(
    session: Session, status: RunStatus | None, limit: int, offset: int
) -> tuple[int, Sequence[Run]]:
    """Newest first."""
    where = [] if status is None else [Run.status == status.value]
    total = session.scalar(select(func.count()).select_from(Run).where(*where)) or 0
    runs = session.scalars(
        select(Run).where(*where).order_by(Run.id.desc()).limit(limit).offset(offset)
    ).all()
    return total, runs


def request_cancel(session: Session, run_id: int) -> Run:
    """Cancel a run no worker holds (queued, or its lease lapsed) now; flag a held one.

    A worker that holds the run sees the flag within a heartbeat and stops at the next batch."""
    run = get_run(session, run_id, for_update=True)
    lifecycle.check(run.status, RunStatus.cancelled)
    now = utcnow()
    held = run.status == RunStatus.running and run.lease_expires_at is not None
    if held and run.lease_expires_at > now:
        stmt = update(Run).where(Run.id == run_id)
    else:
        stmt = lifecycle.transition(
            RunStatus.cancelled, Run.id == run_id, finished_at=now, lease_expires_at=None
        )
    session.execute(stmt.values(cancel_requested=True).execution_options(synchronize_session=False))
    session.refresh(run)
    return run


def delete_run(session: Session, run_id: int) -> None:
    """Remove a run that is not running, with every row that refers to it."""
    run = get_run(session, run_id, for_update=True)
    if run.status == RunStatus.running:
        raise lifecycle.InvalidTransition(f"run {run_id} is running; cancel it first")
    session.execute(delete(Run).where(Run.id == run_id))


# --- the worker's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """Which claim of a run a worker holds: attempts grows with every claim, so it is unique."""

    run_id: int
    worker: str
    attempt: int

    def held(self) -> tuple[ColumnElement[bool], ...]:
        return (
            Run.id == self.run_id,
            Run.worker == self.worker,
            Run.attempts == self.attempt,
            Run.status == RunStatus.running.value,
        )


@dataclass(frozen=True)
class Claim:
    lease: Lease
    spec: RunSpec
    epochs_done: int
    cancel_requested: bool


def _expiry(lease_seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=lease_seconds)


def claim_run(session: Session, worker: str, lease_seconds: float) -> Claim | None:
    """Take the oldest queued run, or a running one whose worker stopped renewing its lease."""
    now = utcnow()
    candidate = lock_for_claim(
        select(Run.id)
        .where(
            or_(
                Run.status == RunStatus.queued.value,
                and_(Run.status == RunStatus.running.value, Run.lease_expires_at < now),
            )
        )
        .order_by(Run.id)
        .limit(1)
    ).scalar_subquery()
    stmt = lifecycle.transition(
        RunStatus.running,
        Run.id == candidate,
        worker=worker,
        attempts=Run.attempts + 1,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        started_at=func.coalesce(Run.started_at, literal(now, UTCDateTime())),
    ).returning(Run.id, Run.spec, Run.epochs_done, Run.attempts, Run.cancel_requested)
    row = session.execute(stmt).one_or_none()
    if row is None:
        return None
    return Claim(
        lease=Lease(run_id=row.id, worker=worker, attempt=row.attempts),
        spec=RunSpec.model_validate(row.spec),
        epochs_done=row.epochs_done,
        cancel_requested=row.cancel_requested,
    )


def renew_lease(session: Session, lease: Lease, lease_seconds: float) -> bool:
    """Extend the lease; returns whether a cancel was requested. Raises LeaseLost."""
    stmt = (
        update(Run)
        .where(*lease.held())
        .values(lease_expires_at=_expiry(lease_seconds))
        .returning(Run.cancel_requested)
    )
    cancel_requested = session.execute(stmt).scalar_one_or_none()
    if cancel_requested is None:
        raise LeaseLost(f"lost run {lease.run_id}")
    return cancel_requested


def _update_held(
    session: Session, lease: Lease, *where: ColumnElement[bool], **values: object
) -> None:
    _execute_held(session, lease, update(Run).where(*lease.held(), *where).values(**values))


def start_training(
    session: Session,
    lease: Lease,
    device: str,
    tensors: Sequence[TensorLike],
    initial_variances: Sequence[float],
) -> None:
    """Record the device, and on a fresh start the measured tensors and their epoch-0 stats."""
    _update_held(session, lease, device=device)
    if session.scalar(select(Run.epochs_done).where(Run.id == lease.run_id)):
        return
    # A claim that died before its first epoch may have written these already.
    session.execute(delete(RunLayer).where(RunLayer.run_id == lease.run_id))
    session.execute(delete(LayerEpochStats).where(LayerEpochStats.run_id == lease.run_id))
    session.execute(
        insert(RunLayer),
        [
            {"run_id": lease.run_id, "index": t.index, "name": t.name, "parameters": t.parameters}
            for t in tensors
        ],
    )
    _insert_variances(session, lease.run_id, 0, initial_variances)


def reset_progress(session: Session, lease: Lease, note: str) -> None:
    """Forget every stored epoch so the run can start again from epoch 0, and say why."""
    _update_held(session, lease, epochs_done=0, note=note)
    for table in (ConstancyCount, LayerEpochStats, EpochMetrics, RunLayer):
        session.execute(delete(table).where(table.run_id == lease.run_id))


def record_epoch(session: Session, lease: Lease, result: EpochLike, lease_seconds: float) -> None:
    """Store one epoch's metrics, weight stats and exact counts, and advance epochs_done."""
    _update_held(
        session,
        lease,
        Run.epochs_done == result.epoch - 1,
        epochs_done=result.epoch,
        lease_expires_at=_expiry(lease_seconds),
    )
    session.execute(
        insert(EpochMetrics).values(
            run_id=lease.run_id,
            epoch=result.epoch,
            train_loss=result.train_loss,
            train_accuracy=result.train_accuracy,
            test_loss=result.test_loss,
            test_accuracy=result.test_accuracy,
            epoch_seconds=result.epoch_seconds,
        )
    )
    _insert_variances(session, lease.run_id, result.epoch, result.variances)
    session.execute(
        insert(ConstancyCount),
        [
            {
                "run_id": lease.run_id,
                "epoch": result.epoch,
                "layer_index": layer,
                "tolerance_index": tol,
                "count": count,
            }
            for layer, per_tolerance in enumerate(result.counts)
            for tol, count in enumerate(per_tolerance)
        ],
    )


def _insert_variances(
    session: Session, run_id: int, epoch: int, variances: Sequence[float]
) -> None:
    session.execute(
        insert(LayerEpochStats),
        [
            {"run_id": run_id, "epoch": epoch, "layer_index": i, "variance": v}
            for i, v in enumerate(variances)
        ],
    )


def finish_run(session: Session, lease: Lease, status: RunStatus, error: str | None = None) -> None:
    """End a held run as succeeded, failed or cancelled."""
    stmt = lifecycle.transition(
        status, *lease.held(), finished_at=utcnow(), lease_expires_at=None, error=error
    )
    _execute_held(session, lease, stmt)


def release_run(session: Session, lease: Lease) -> None:
    """Hand a held run back to the queue; the next claim resumes it from its last checkpoint."""
    stmt = lifecycle.transition(RunStatus.queued, *lease.held(), lease_expires_at=None)
    _execute_held(session, lease, stmt)


def _execute_held(session: Session, lease: Lease, stmt: Update) -> None:
    """Run a guarded UPDATE of the held run; no row changed means the lease is gone."""
    result = session.execute(stmt.execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise LeaseLost(f"lost run {lease.run_id}")
