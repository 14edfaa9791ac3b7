"""Constancy counts as one row per epoch (``epoch_counts``) instead of one per layer and tolerance.

A comparison of 50 runs at 32 tolerances read 320,000 rows; it now reads 2,500, each holding the
epoch's counts[layer][tolerance] as little-endian int64 (server.store.models.Int64Array). The counts
are moved over unchanged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = sa.table(
    "constancy_counts",
    sa.column("run_id", sa.Integer()),
    sa.column("epoch", sa.Integer()),
    sa.column("layer_index", sa.Integer()),
    sa.column("tolerance_index", sa.Integer()),
    sa.column("count", sa.Integer()),
)
NEW = sa.table(
    "epoch_counts",
    sa.column("run_id", sa.Integer()),
    sa.column("epoch", sa.Integer()),
    sa.column("counts", sa.LargeBinary()),
)


def upgrade() -> None:
    op.create_table(
        "epoch_counts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "epoch"),
    )
    conn = op.get_bind()
    grouped: dict[tuple[int, int], dict[int, dict[int, int]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for run_id, epoch, layer, tol, count in conn.execute(sa.select(OLD)):
        grouped[(run_id, epoch)][layer][tol] = count
    rows = [
        {
            "run_id": run_id,
            "epoch": epoch,
            "counts": np.array(
                [[tols[t] for t in sorted(tols)] for _, tols in sorted(layers.items())],
                dtype="<i8",
            ).tobytes(),
        }
        for (run_id, epoch), layers in grouped.items()
    ]
    if rows:
        conn.execute(sa.insert(NEW), rows)
    op.drop_table("constancy_counts")


def downgrade() -> None:
    op.create_table(
        "constancy_counts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer_index", sa.Integer(), nullable=False),
        sa.Column("tolerance_index", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "epoch", "layer_index", "tolerance_index"),
    )
    conn = op.get_bind()
    count_layers = sa.text("SELECT run_id, count(*) FROM run_layers GROUP BY run_id")
    layers = {run_id: n for run_id, n in conn.execute(count_layers).all()}
    rows = [
        {"run_id": run_id, "epoch": epoch, "layer_index": layer, "tolerance_index": t, "count": c}
        for run_id, epoch, blob in conn.execute(sa.select(NEW))
        for layer, per_tolerance in enumerate(
            np.frombuffer(blob, dtype="<i8").reshape(layers[run_id], -1).tolist()
        )
        for t, c in enumerate(per_tolerance)
    ]
    if rows:
        conn.execute(sa.insert(OLD), rows)
    op.drop_table("epoch_counts")
