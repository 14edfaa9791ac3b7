"""The job protocol: how a worker claims a run, holds it, records it epoch by epoch and ends it.

    claim_run ─▶ start_training ─▶ record_epoch × E ─▶ finish_run
        │              (renew_lease every few seconds; it reports cancel requests)
        └─ a worker that stops hands the run back (release_run) or lets its lease lapse;
           the next claim resumes it from ``epochs_done``.

Where a claimed run starts (from its last stored epoch, or again from epoch 0) is decided once,
by the engine's ``resume_point`` (it needs the checkpoint); ``start_training`` records that
decision. The engine's records (server/core/records.py) are what these functions write.

Functions take a Session and leave committing to the caller (one transaction per step). Every
write is guarded by the worker's ``Lease``: a conditional UPDATE that changes nothing once
another worker has taken the run over, and then raises ``LeaseLost``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Update,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from server.core.records import EpochRecord, TensorInfo
from server.core.schemas import RunSpec, RunStatus
from server.store import lifecycle
from server.store.db import lock_for_claim
from server.store.models import (
    DeadUnits,
    EpochCounts,
    EpochMetrics,
    EpochSpectrum,
    ExplainedCount,
    LayerEpochStats,
    Run,
    RunLayer,
    RunMechanism,
    UTCDateTime,
    pack_units,
    utcnow,
)


class LeaseLost(Exception):
    """The worker no longer holds the run: it was taken over, cancelled away or deleted."""


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
    """Take the queued run of the highest priority, the oldest first among equals, or a running
    one whose worker stopped renewing its lease (in the same order)."""
    now = utcnow()
    candidate = lock_for_claim(
        select(Run.id).where(lifecycle.unheld(now)).order_by(Run.priority.desc(), Run.id).limit(1)
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


def start_training(
    session: Session,
    lease: Lease,
    *,
    start_epoch: int,
    device: str,
    tensors: Sequence[TensorInfo],
    initial_variances: Sequence[float],
    note: str | None = None,
    spectrum_tolerances: Sequence[float] | None = None,
    numerics: dict[str, Any] | None = None,
) -> None:
    """Record where the held run starts: after its stored epoch ``start_epoch`` (a resume), or
    at epoch 0, forgetting whatever an earlier claim stored and saying why in ``note``.

    ``spectrum_tolerances``: the engine measures the mechanism (dead units, explained counts and
    the spectrum at this ladder); a fresh start records that it does. ``numerics``: the float
    precision and determinism settings the engine trains with."""
    if start_epoch:
        _update_held(
            session, lease, Run.epochs_done == start_epoch, device=device, numerics=numerics
        )
        return
    values: dict[str, object] = {"device": device, "epochs_done": 0, "numerics": numerics}
    if note is not None:
        values["note"] = note
    _update_held(session, lease, **values)
    # A claim that died before its first epoch, or a run restarting, may have stored rows.
    for table in (
        EpochCounts,
        LayerEpochStats,
        EpochMetrics,
        RunLayer,
        EpochSpectrum,
        DeadUnits,
        ExplainedCount,
        RunMechanism,
    ):
        session.execute(delete(table).where(table.run_id == lease.run_id))
    if spectrum_tolerances is not None:
        session.execute(
            insert(RunMechanism).values(
                run_id=lease.run_id, tolerances=[float(t) for t in spectrum_tolerances]
            )
        )
    session.execute(
        insert(RunLayer),
        [
            {"run_id": lease.run_id, "index": t.index, "name": t.name, "parameters": t.parameters}
            for t in tensors
        ],
    )
    _insert_variances(session, lease.run_id, 0, initial_variances)


def record_epoch(session: Session, lease: Lease, result: EpochRecord, lease_seconds: float) -> None:
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
        insert(EpochCounts).values(run_id=lease.run_id, epoch=result.epoch, counts=result.counts)
    )
    _insert_mechanism(session, lease.run_id, result)


def _insert_mechanism(session: Session, run_id: int, result: EpochRecord) -> None:
    """The epoch's spectrum, dead units, explained and no-gradient counts (when the engine
    measured them)."""
    if result.spectrum:
        session.execute(
            insert(EpochSpectrum).values(run_id=run_id, epoch=result.epoch, counts=result.spectrum)
        )
    if result.dead_units:
        session.execute(
            insert(DeadUnits),
            [
                {
                    "run_id": run_id,
                    "epoch": result.epoch,
                    "layer_index": layer,
                    "dead": len(units),
                    "units": pack_units(units),
                }
                for layer, units in enumerate(result.dead_units)
            ],
        )
    if result.unchanged:
        session.execute(
            insert(ExplainedCount),
            [
                {
                    "run_id": run_id,
                    "epoch": result.epoch,
                    "layer_index": layer,
                    "unchanged": unchanged,
                    "explained": explained,
                    "no_gradient": no_gradient,
                }
                for layer, (unchanged, explained, no_gradient) in enumerate(
                    zip(
                        result.unchanged,
                        result.explained,
                        # None (NULL) from an engine that does not count the causes.
                        result.no_gradient or [None] * len(result.unchanged),
                        strict=True,
                    )
                )
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


def _update_held(
    session: Session, lease: Lease, *where: ColumnElement[bool], **values: object
) -> None:
    _execute_held(session, lease, update(Run).where(*lease.held(), *where).values(**values))


def _execute_held(session: Session, lease: Lease, stmt: Update) -> None:
    """Run a guarded UPDATE of the held run; no row changed means the lease is gone."""
    result = session.execute(stmt.execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise LeaseLost(f"lost run {lease.run_id}")
