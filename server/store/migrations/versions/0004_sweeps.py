"""Sweeps: a grid of runs as one experiment (``sweeps``, ``runs.sweep_id``), and run priorities
(``runs.priority``, with an index for the claim's ORDER BY priority DESC, id).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Ids as the runs' (0005): 64-bit, never handed out twice (SQLite AUTOINCREMENT).
    op.create_table(
        "sweeps",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a constraint to a table, but a column may carry an inline
        # REFERENCES clause: no copy of the table (and of its CHECK constraints) is needed.
        # No ON DELETE: SQLAlchemy does not read it back from an inline clause, so the sweep's
        # runs are deleted explicitly (server/views/sweeps.py), before the sweep.
        op.execute("ALTER TABLE runs ADD COLUMN sweep_id INTEGER REFERENCES sweeps (id)")
    else:
        op.add_column("runs", sa.Column("sweep_id", ID, nullable=True))
        op.create_foreign_key("runs_sweep_id_fkey", "runs", "sweeps", ["sweep_id"], ["id"])
    op.add_column("runs", sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    op.create_index("ix_runs_claim", "runs", ["status", sa.text("priority DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_claim", table_name="runs")
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("priority")
        batch.drop_column("sweep_id")
    op.drop_table("sweeps")
