"""Run ids are never handed out twice; ids are 64-bit on PostgreSQL too; runs record the
numerics their engine trained with.

- SQLite: ``runs`` is rebuilt (Alembic batch mode) as ``INTEGER PRIMARY KEY AUTOINCREMENT``, so a
  deleted highest id is not reused (SQLite's plain rowid hands it out again). Rows are copied;
  ``Database.upgrade`` turns foreign keys off for the rebuild, so dropping the old table does not
  cascade to the rows that reference it.
- PostgreSQL: sequences never reuse ids already; ``runs.id``, its sequence and every ``run_id``
  become BIGINT, as the API admits ids up to 2**63 - 1 (an INTEGER overflowed: a 500).
- ``runs.numerics`` (JSON): torch version, device, float32 matmul precision, deterministic
  algorithms and TF32 flags in force when the run trained.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHILDREN = (
    "run_layers",
    "epoch_metrics",
    "layer_epoch_stats",
    "epoch_counts",
    "run_mechanism",
    "epoch_spectrum",
    "dead_units",
    "explained_counts",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "runs", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.add_column(sa.Column("numerics", sa.JSON(), nullable=True))
        return
    op.add_column("runs", sa.Column("numerics", sa.JSON(), nullable=True))
    for table in CHILDREN:
        op.alter_column(table, "run_id", type_=sa.BigInteger(), existing_type=sa.Integer())
    op.alter_column("runs", "id", type_=sa.BigInteger(), existing_type=sa.Integer())
    op.execute("ALTER SEQUENCE runs_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("runs", recreate="always") as batch:
            batch.drop_column("numerics")
        return
    op.execute("ALTER SEQUENCE runs_id_seq AS INTEGER")
    op.alter_column("runs", "id", type_=sa.Integer(), existing_type=sa.BigInteger())
    for table in CHILDREN:
        op.alter_column(table, "run_id", type_=sa.Integer(), existing_type=sa.BigInteger())
    op.drop_column("runs", "numerics")
