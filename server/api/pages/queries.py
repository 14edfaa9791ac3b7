"""The UI's reads beyond the JSON views: a page of the runs list, and runs to compare a run with.

Every figure and number of a run comes from server.views.analysis, as the JSON views' do; these
queries only choose runs and carry what the list shows of each."""

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from server.core.experiment import dataset_sizes, weight_shapes
from server.core.schemas import RunSpec, RunStatus
from server.store.models import EpochMetrics, Run, Sweep

SortKey = Literal["id", "name", "status", "weight_decay", "progress", "test_accuracy", "created"]
SORT_COLUMNS: dict[SortKey, ColumnElement[Any]] = {
    "id": Run.id,
    "name": Run.name,
    "status": Run.status,
    "weight_decay": Run.spec["weight_decay"].as_float(),
    "progress": Run.epochs_done,
    "test_accuracy": EpochMetrics.test_accuracy,
    "created": Run.created_at,
}
# Shown for every run; other spec fields only when they differ between the runs shown, but
# for epochs, which the progress column shows (done / epochs).
ALWAYS_SHOWN = ("weight_decay",)
SHOWN_AS_PROGRESS = ("epochs",)
# Told apart by their label already, not by their spec.
NOT_COMPARED = frozenset({"name"})


@dataclass(frozen=True)
class ListedRun:
    run: Run
    # At the run's last stored epoch; None before its first.
    test_accuracy: float | None


@dataclass(frozen=True)
class SweepGroup:
    """The members of one sweep on a page of the list, listed together under it."""

    id: int
    name: str | None
    runs: list[ListedRun]

    @property
    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.runs:
            counts[item.run.status] = counts.get(item.run.status, 0) + 1
        return counts


@dataclass(frozen=True)
class RunsPage:
    total: int
    # Runs per status among those the name filter keeps (for the status filter's counts).
    counts: dict[str, int]
    runs: list[ListedRun]
    # The page's rows: a run of no sweep, or a sweep's members at the place of the first one.
    entries: list[ListedRun | SweepGroup]


def runs_page(
    session: Session,
    *,
    status: RunStatus | None,
    name: str,
    sort: SortKey,
    descending: bool,
    limit: int,
    offset: int,
) -> RunsPage:
    """One page of runs with their last test accuracy: two queries, whatever the page size."""
    named = [Run.name.icontains(name, autoescape=True)] if name else []
    counts = dict(
        session.execute(select(Run.status, func.count()).where(*named).group_by(Run.status)).all()
    )
    total = counts.get(status.value, 0) if status else sum(counts.values())
    column = SORT_COLUMNS[sort]
    order = column.desc() if descending else column.asc()
    where = named + ([Run.status == status.value] if status else [])
    rows = session.execute(
        select(Run, EpochMetrics.test_accuracy)
        # epochs_done is the last stored epoch: a worker advances both in one transaction.
        .outerjoin(
            EpochMetrics,
            and_(EpochMetrics.run_id == Run.id, EpochMetrics.epoch == Run.epochs_done),
        )
        .where(*where)
        .order_by(order.nulls_last(), Run.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    listed = [ListedRun(run, accuracy) for run, accuracy in rows]
    return RunsPage(total, counts, listed, _by_sweep(session, listed))


def _by_sweep(session: Session, listed: list[ListedRun]) -> list[ListedRun | SweepGroup]:
    """``listed`` in its order, each sweep's members gathered where its first one is."""
    ids = {item.run.sweep_id for item in listed if item.run.sweep_id is not None}
    names = dict(session.execute(select(Sweep.id, Sweep.name).where(Sweep.id.in_(ids))).all())
    entries: list[ListedRun | SweepGroup] = []
    groups: dict[int, SweepGroup] = {}
    for item in listed:
        sweep_id = item.run.sweep_id
        if sweep_id is None:
            entries.append(item)
        elif sweep_id in groups:
            groups[sweep_id].runs.append(item)
        else:
            groups[sweep_id] = SweepGroup(sweep_id, names.get(sweep_id), [item])
            entries.append(groups[sweep_id])
    return entries


def differing_fields(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The spec fields (in RunSpec's order) whose values are not the same in all ``specs``."""
    return [
        field
        for field in RunSpec.model_fields
        if field not in NOT_COMPARED and len({repr(spec.get(field)) for spec in specs}) > 1
    ]


@dataclass(frozen=True)
class Neighbour:
    """A run whose spec differs from another's in one field only."""

    id: int
    name: str | None
    status: str
    field: str
    value: Any


def neighbours(session: Session, run: Run, limit: int = 20) -> list[Neighbour]:
    """The newest runs that differ from ``run`` in exactly one spec field (the name aside).

    Specs are JSON, compared here rather than in SQL, which spells JSON differently per
    database; a list of a thousand runs reads in a few milliseconds."""
    found = []
    others = session.execute(
        select(Run.id, Run.name, Run.status, Run.spec)
        .where(Run.id != run.id)
        .order_by(Run.id.desc())
    )
    for other in others:
        fields = differing_fields([run.spec, other.spec])
        if len(fields) == 1:
            field = fields[0]
            found.append(Neighbour(other.id, other.name, other.status, field, other.spec[field]))
            if len(found) == limit:
                break
    return found


# The latest epochs the time estimate of a new sweep learns from.
ESTIMATE_EPOCHS = 200


def training_cost(spec: Mapping[str, Any]) -> int:
    """What an epoch's time grows with: train samples × weights (a forward and a backward pass
    per sample through every weight)."""
    full = RunSpec.model_validate(spec)
    samples, _ = dataset_sizes(full.dataset, full.train_size, full.test_size)
    return samples * sum(rows * cols for rows, cols in weight_shapes(full.hidden_sizes))


def seconds_per_cost(session: Session) -> float | None:
    """Seconds an epoch took per unit of ``training_cost`` on this server: the median over its
    latest stored epochs; None before the first."""
    rows = session.execute(
        select(Run.spec, EpochMetrics.epoch_seconds)
        .join(EpochMetrics, EpochMetrics.run_id == Run.id)
        .order_by(Run.id.desc(), EpochMetrics.epoch.desc())
        .limit(ESTIMATE_EPOCHS)
    ).all()
    rates = [seconds / training_cost(spec) for spec, seconds in rows]
    return statistics.median(rates) if rates else None
