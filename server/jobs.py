"""The job protocol: how a worker claims a run, holds it, records it epoch by epoch and ends it.

    claim_run ─▶ start_training ─▶ record_epoch × E ─▶ finish_run
        │              (renew_lease every few seconds; it reports cancel requests)
        └─ a worker that stops hands the run back (release_run) or lets its lease lapse;
           the next claim resumes it from ``epochs_done``.

Where a claimed run starts (from its last stored epoch, or again from epoch 0) is decided once,
by the engine's ``resume_point`` (it needs the checkpoint); ``start_training`` records that
decision. The record types below are what the engine yields and these functions write.

Functions take a Session and leave committing to the caller (one transaction per step). Every
write is guarded by the worker's ``Lease``: a conditional UPDATE that changes nothing once
another worker has taken the run over, and then raises ``LeaseLost``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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
from server.schemas import RunSpec, RunStatus


class LeaseLost(Exception):
    """The worker no longer holds the run: it was taken over, cancelled away or deleted."""


@dataclass(frozen=True)
class TensorInfo:
    """A measured tensor: the Linear weights in layer order, then (include_biases) biases."""

    index: int
    name: str  # state_dict key, e.g. "layers.0.weight"
    parameters: int


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch, as the engine yields it and ``record_epoch`` stores it."""

    epoch: int  # 1..E
    train_loss: float  # mean of the epoch's batch losses
    train_accuracy: float  # share of training samples classified right while training
    test_loss: float  # mean of the test batches' losses
    test_accuracy: float
    epoch_seconds: float  # training, test pass, constancy, checkpoint and snapshot
    counts: list[list[int]]  # counts[tensor index][tolerance index]
    variances: list[float]  # each measured tensor's weight variance (ddof 0) after the epoch
    # The mechanism (empty from engines that do not measure it; then nothing is stored):
    # counts at the spectrum's ladder, spectrum[tensor index][ladder index] (same kernel, basis);
    spectrum: list[list[int]] = field(default_factory=list)
    # per hidden layer (the ReLU after Linear i), the units that never fired this epoch;
    dead_units: list[list[int]] = field(default_factory=list)
    # per weight matrix, its weights exactly unchanged since the previous epoch, and how many of
    # those lie in a dead unit's incoming row or outgoing column (each weight counted once).
    unchanged: list[int] = field(default_factory=list)
    explained: list[int] = field(default_factory=list)


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
        select(Run.id)
        .where(
            or_(
                Run.status == RunStatus.queued.value,
                and_(Run.status == RunStatus.running.value, Run.lease_expires_at < now),
            )
        )
        .order_by(Run.priority.desc(), Run.id)
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
    """The epoch's spectrum, dead units and explained counts (when the engine measured them)."""
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
                }
                for layer, (unchanged, explained) in enumerate(
                    zip(result.unchanged, result.explained, strict=True)
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
