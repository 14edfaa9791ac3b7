"""The analysis views: plain functions from stored rows to the API's response models.

JSON routes return these models as they are; figure routes draw them. Percentages are derived
here from the exact stored counts: ``100 * count / parameters``.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import ConstancyCount, EpochMetrics, LayerEpochStats, Run, RunLayer
from server.schemas import (
    CompareAllOut,
    CompareOut,
    CompareRun,
    ConstancyAllOut,
    ConstancyOut,
    LayerConstancy,
    LayerWeightStats,
    MetricsOut,
    RunSpec,
    WeightStatsOut,
)

# "all" layers' mean, the "last2" layers' mean, or one layer by index.
CompareScope = Literal["all", "last2"] | Annotated[int, Field(ge=0)]


class NotComputed(LookupError):
    """The run has no such tolerance or layer (the API answers 404 with what it has)."""


def _spec(run: Run) -> RunSpec:
    return RunSpec.model_validate(run.spec)


def metrics(session: Session, run: Run) -> MetricsOut:
    rows = session.scalars(
        select(EpochMetrics).where(EpochMetrics.run_id == run.id).order_by(EpochMetrics.epoch)
    ).all()
    return MetricsOut(
        run_id=run.id,
        epochs=[r.epoch for r in rows],
        train_loss=[r.train_loss for r in rows],
        train_accuracy=[r.train_accuracy for r in rows],
        test_loss=[r.test_loss for r in rows],
        test_accuracy=[r.test_accuracy for r in rows],
        epoch_seconds=[r.epoch_seconds for r in rows],
    )


def _layers(session: Session, run_id: int) -> Sequence[RunLayer]:
    return session.scalars(
        select(RunLayer).where(RunLayer.run_id == run_id).order_by(RunLayer.index)
    ).all()


def weight_stats(session: Session, run: Run) -> WeightStatsOut:
    rows = session.execute(
        select(LayerEpochStats.epoch, LayerEpochStats.layer_index, LayerEpochStats.variance)
        .where(LayerEpochStats.run_id == run.id)
        .order_by(LayerEpochStats.epoch, LayerEpochStats.layer_index)
    ).all()
    epochs = sorted({r.epoch for r in rows})
    variance: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        variance[r.layer_index].append(r.variance)
    return WeightStatsOut(
        run_id=run.id,
        epochs=epochs,
        layers=[
            LayerWeightStats(
                index=la.index, name=la.name, parameters=la.parameters, variance=variance[la.index]
            )
            for la in _layers(session, run.id)
        ],
    )


def tolerance_index(run: Run, tol: float) -> int:
    """Where ``tol`` is in the run's tolerances; NotComputed lists them if it is not there."""
    tolerances = _spec(run).tolerances
    for i, t in enumerate(tolerances):
        # Lenient only about float spelling (1e-3 vs 0.001): 0 matches nothing but 0.
        if math.isclose(t, tol, rel_tol=1e-9, abs_tol=0.0):
            return i
    raise NotComputed(f"run {run.id} has no results for tol={tol:g}; it computed {tolerances}")


def _mean(series: Sequence[list[float]]) -> list[float]:
    """Unweighted mean per epoch (the seed's "average of all layers")."""
    return [sum(values) / len(values) for values in zip(*series, strict=True)]


def constancy(session: Session, run: Run, tol: float) -> ConstancyOut:
    """Per-layer % of weights constant from epoch e-1 to e, their mean and last-two mean.

    ``layers`` lists every measured tensor (bias vectors too, with ``include_biases``); the
    means are over the layers' weight matrices only, as in the seed."""
    spec = _spec(run)
    t_index = tolerance_index(run, tol)
    rows = session.execute(
        select(ConstancyCount.epoch, ConstancyCount.layer_index, ConstancyCount.count)
        .where(ConstancyCount.run_id == run.id, ConstancyCount.tolerance_index == t_index)
        .order_by(ConstancyCount.epoch, ConstancyCount.layer_index)
    ).all()
    counts: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        counts[r.layer_index].append(r.count)
    layers = [
        LayerConstancy(
            index=la.index,
            name=la.name,
            parameters=la.parameters,
            percent=[100.0 * c / la.parameters for c in counts[la.index]],
        )
        for la in _layers(session, run.id)
    ]
    percents = [la.percent for la in layers if not la.name.endswith(".bias")]
    return ConstancyOut(
        run_id=run.id,
        tolerance=spec.tolerances[t_index],
        basis=spec.basis,
        epochs=sorted({r.epoch for r in rows}),
        layers=layers,
        mean=_mean(percents),
        last_two_mean=_mean(percents[-2:]),
    )


def constancy_all(session: Session, run: Run) -> ConstancyAllOut:
    spec = _spec(run)
    return ConstancyAllOut(
        run_id=run.id,
        basis=spec.basis,
        tolerances=spec.tolerances,
        results=[constancy(session, run, t) for t in spec.tolerances],
    )


def _scoped(view: ConstancyOut, scope: CompareScope) -> list[float]:
    if scope == "all":
        return view.mean
    if scope == "last2":
        return view.last_two_mean
    by_index = {la.index: la.percent for la in view.layers}
    if scope not in by_index:
        raise NotComputed(f"run {view.run_id} has no layer {scope}; it has {sorted(by_index)}")
    return by_index[scope]


def compare(session: Session, runs: Sequence[Run], tol: float, scope: CompareScope) -> CompareOut:
    """The runs side by side at one tolerance: one series per run for the scope."""
    views = [constancy(session, run, tol) for run in runs]
    return CompareOut(
        tolerance=views[0].tolerance,
        scope=str(scope),
        runs=[
            CompareRun(
                run_id=run.id,
                name=run.name,
                weight_decay=_spec(run).weight_decay,
                epochs=view.epochs,
                percent=_scoped(view, scope),
            )
            for run, view in zip(runs, views, strict=True)
        ],
    )


def shared_tolerances(runs: Sequence[Run]) -> list[float]:
    """The tolerances every one of the runs computed, ascending."""
    shared = set(_spec(runs[0]).tolerances)
    for run in runs[1:]:
        shared &= set(_spec(run).tolerances)
    if not shared:
        listed = "; ".join(f"run {r.id}: {_spec(r).tolerances}" for r in runs)
        raise NotComputed(f"the runs share no tolerance ({listed})")
    return sorted(shared)


def compare_all(session: Session, runs: Sequence[Run], scope: CompareScope) -> CompareAllOut:
    tolerances = shared_tolerances(runs)
    return CompareAllOut(
        scope=str(scope),
        tolerances=tolerances,
        results=[compare(session, runs, t, scope) for t in tolerances],
    )
