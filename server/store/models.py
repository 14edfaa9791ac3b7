"""Tables. Exact integer counts are stored; percentages are derived when read (analysis.py)."""

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.core.schemas import RunStatus

STATUSES = tuple(s.value for s in RunStatus)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every dialect (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


# A run's or sweep's id: 64-bit as the API admits (ids up to 2**63 - 1), on PostgreSQL too (its
# INTEGER is 32-bit). SQLite's INTEGER is already 64-bit and must stay INTEGER to be the rowid.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="ck_runs_status"),
        CheckConstraint("epochs_done >= 0", name="ck_runs_epochs_done"),
        # Ids are never handed out twice: SQLite would otherwise reuse a deleted highest id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.queued.value)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Something a user should know about how the run went (e.g. restarted from epoch 0).
    note: Mapped[str | None] = mapped_column(Text)
    # What the engine trained with: torch version, device, fp32 matmul precision, determinism
    # and TF32 flags (worker/engine/devices.py); None until a worker starts the run.
    numerics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The sweep this run is a member of (server/views/sweeps.py), which deletes its members itself
    # before it deletes the sweep (no ON DELETE CASCADE: see migration 0004).
    sweep_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("sweeps.id"), index=True)
    # Claims take higher priorities first, then the oldest (jobs.claim_run). Not part of the
    # spec: it changes when a run trains, never what it computes.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# Serves the claim's ORDER BY priority DESC, id among the runs of one status.
Index("ix_runs_claim", Run.status, Run.priority.desc(), Run.id)


class Sweep(Base):
    """A grid of runs as one experiment: ``base`` (a run spec, any fields) expanded over the
    cartesian product of ``grid`` ({spec field: [values]}); its members are runs with its id.
    Its status and progress are derived from the members' when read."""

    __tablename__ = "sweeps"
    # Ids are never handed out twice, as the runs'.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunLayer(Base):
    """A measured tensor of a run, in model order (layer 0 first)."""

    __tablename__ = "run_layers"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[int] = mapped_column(Integer)


class EpochMetrics(Base):
    __tablename__ = "epoch_metrics"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    train_accuracy: Mapped[float] = mapped_column(Float)
    test_loss: Mapped[float] = mapped_column(Float)
    test_accuracy: Mapped[float] = mapped_column(Float)
    epoch_seconds: Mapped[float] = mapped_column(Float)


class LayerEpochStats(Base):
    """Per-layer weight statistics after an epoch (epoch 0 = initial weights)."""

    __tablename__ = "layer_epoch_stats"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    variance: Mapped[float] = mapped_column(Float)


class Int64Array(TypeDecorator[np.ndarray]):
    """Integers as a blob of little-endian int64: exact, and read back without parsing."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else np.asarray(value, dtype="<i8").tobytes()

    def process_result_value(self, value: bytes | None, dialect: Any) -> np.ndarray | None:
        return None if value is None else np.frombuffer(value, dtype="<i8")


class EpochCounts(Base):
    """One epoch's exact constancy counts, ``counts[layer][tolerance]`` flattened: how many
    weights of the layer (RunLayer.index) stayed constant from epoch-1 to epoch at the run's
    tolerance of that index (spec["tolerances"], ascending). One row per epoch, as the worker
    writes it: a view of many runs and tolerances reads rows in proportion to the epochs."""

    __tablename__ = "epoch_counts"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    counts: Mapped[np.ndarray] = mapped_column(Int64Array)


# --- the mechanism: why weights stay constant (dead units, explained counts, the spectrum) ---


class RunMechanism(Base):
    """A run whose engine measured the mechanism from its first epoch, and the spectrum's ladder
    of tolerances it used (server.core.experiment.SPECTRUM_TOLERANCES when it started). Runs stored
    before decaylab measured it have no row: their /units and /spectrum answer 404."""

    __tablename__ = "run_mechanism"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    tolerances: Mapped[list[float]] = mapped_column(JSON)


class EpochSpectrum(Base):
    """Like EpochCounts, at the run's spectrum ladder (run_mechanism.tolerances): one epoch's
    ``counts[layer][ladder index]`` flattened, with the same kernel and basis as the run's own
    tolerances."""

    __tablename__ = "epoch_spectrum"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    counts: Mapped[np.ndarray] = mapped_column(Int64Array)


class DeadUnits(Base):
    """The units of hidden layer ``layer_index`` (the ReLU after Linear i) whose output was 0 for
    every training sample of ``epoch``: ``dead`` of them, ``units`` a bitmask (see pack_units).

    A bitmask rather than a list of indices: its size is bounded by the layer (at most hidden/8
    bytes: 64 for the seed's 512 units, 1 KiB for the largest allowed layer of 8192) however many
    units die, where a JSON list of indices grows to ~5 bytes a dead unit (40 KiB for a dead
    layer of 8192); the count is kept beside it so that counts need no decoding."""

    __tablename__ = "dead_units"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    dead: Mapped[int] = mapped_column(Integer)
    units: Mapped[bytes] = mapped_column(LargeBinary)


class ExplainedCount(Base):
    """Weight matrix ``layer_index`` from epoch-1 to epoch: its weights exactly unchanged, how
    many of those lie in a dead unit's incoming row or outgoing column (counted once), and how
    many of those unchanged got an exactly zero loss gradient in every batch of the epoch
    (``no_gradient``; NULL for epochs trained before decaylab counted it: migration 0006). The
    rest of the unchanged are *rounded*: the causes view (server/views/causes.py) derives it."""

    __tablename__ = "explained_counts"

    run_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    unchanged: Mapped[int] = mapped_column(Integer)
    explained: Mapped[int] = mapped_column(Integer)
    no_gradient: Mapped[int | None] = mapped_column(Integer)


def pack_units(units: list[int]) -> bytes:
    """Unit indices as a bitmask: unit j is bit j % 8 (least significant first) of byte j // 8;
    as many bytes as the highest index needs (b"" when none)."""
    mask = bytearray((max(units) // 8 + 1) if units else 0)
    for j in units:
        mask[j // 8] |= 1 << (j % 8)
    return bytes(mask)


def unpack_units(mask: bytes) -> list[int]:
    """The unit indices of a pack_units bitmask, ascending."""
    return [8 * i + b for i, byte in enumerate(mask) for b in range(8) if byte >> b & 1]
