"""Initial tables: runs, their measured layers, per-epoch metrics, weight stats and counts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name="ck_runs_status"),
        sa.CheckConstraint("epochs_done >= 0", name="ck_runs_epochs_done"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_layers",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "index"),
    )
    op.create_table(
        "epoch_metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=False),
        sa.Column("train_accuracy", sa.Float(), nullable=False),
        sa.Column("test_loss", sa.Float(), nullable=False),
        sa.Column("test_accuracy", sa.Float(), nullable=False),
        sa.Column("epoch_seconds", sa.Float(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch"),
    )
    op.create_table(
        "layer_epoch_stats",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer_index", sa.Integer(), nullable=False),
        sa.Column("variance", sa.Float(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch", "layer_index"),
    )
    op.create_table(
        "constancy_counts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer_index", sa.Integer(), nullable=False),
        sa.Column("tolerance_index", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch", "layer_index", "tolerance_index"),
    )


def downgrade() -> None:
    for table in ("constancy_counts", "layer_epoch_stats", "epoch_metrics", "run_layers"):
        op.drop_table(table)
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_table("runs")
