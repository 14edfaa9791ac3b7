"""The causes of exact constancy: per weight matrix and epoch, the unchanged weights whose loss
gradient was exactly 0 in every batch (``explained_counts.no_gradient``; the rest are rounded).

Nullable: epochs stored before are kept and answer the causes view with 404 (not measured).
SQLite adds the column in place (ALTER TABLE ADD COLUMN); its down-migration rebuilds the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("explained_counts", sa.Column("no_gradient", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("explained_counts") as batch:
        batch.drop_column("no_gradient")
