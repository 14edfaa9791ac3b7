"""Tables. Exact integer counts are stored; percentages are derived when read (analysis.py)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.schemas import RunStatus

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


# A run id: 64-bit as the API admits (ids up to 2**63 - 1), on PostgreSQL too (its INTEGER is
# 32-bit). SQLite's INTEGER is already 64-bit and must stay INTEGER to be the rowid.
RunIdType = BigInteger().with_variant(Integer(), "sqlite")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="ck_runs_status"),
        CheckConstraint("epochs_done >= 0", name="ck_runs_epochs_done"),
        # Ids are never handed out twice: SQLite would otherwise reuse a deleted highest id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RunIdType, primary_key=True)
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


class RunLayer(Base):
    """A measured tensor of a run, in model order (layer 0 first)."""

    __tablename__ = "run_layers"

    run_id: Mapped[int] = mapped_column(
        RunIdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[int] = mapped_column(Integer)


class EpochMetrics(Base):
    __tablename__ = "epoch_metrics"

    run_id: Mapped[int] = mapped_column(
        RunIdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
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
        RunIdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    variance: Mapped[float] = mapped_column(Float)


class ConstancyCount(Base):
    """How many weights of a layer stayed constant from epoch-1 to epoch at a tolerance.

    tolerance_index points into the run's spec["tolerances"] (ascending)."""

    __tablename__ = "constancy_counts"

    run_id: Mapped[int] = mapped_column(
        RunIdType, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tolerance_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
