"""The mechanism: dead units, the exact constancy they explain, and the movement spectrum.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def _epoch_layer_keys() -> list[sa.Column]:
    return [
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer_index", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "run_mechanism",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tolerances", sa.JSON(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "epoch_spectrum",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch"),
    )
    op.create_table(
        "dead_units",
        *_epoch_layer_keys(),
        sa.Column("dead", sa.Integer(), nullable=False),
        sa.Column("units", sa.LargeBinary(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch", "layer_index"),
    )
    op.create_table(
        "explained_counts",
        *_epoch_layer_keys(),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("explained", sa.Integer(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "epoch", "layer_index"),
    )


def downgrade() -> None:
    for table in ("explained_counts", "dead_units", "epoch_spectrum", "run_mechanism"):
        op.drop_table(table)
