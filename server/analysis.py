"""The analysis views: stored rows to the API's response models.

Percentages are derived here from the exact stored counts: ``100 * count / parameters``. Each
view reads what it needs for all of its runs and tolerances in a fixed number of queries (one
for the layers, one for the counts), and parses each run's spec once, so its cost grows with the
numbers it returns rather than with the runs and tolerances it covers.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import scope as scopes
from server.errors import NotComputed
from server.experiment import weight_shapes
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
from server.scope import Scope


@dataclass(frozen=True)
class _Layer:
    index: int
    name: str
    parameters: int
    shape: list[int]


def _shape(name: str, parameters: int, spec: RunSpec) -> list[int]:
    """A measured tensor's shape from its name (``layers.<i>.weight`` or ``.bias``) and the
    spec: [out, in] for a weight matrix, [out] for a bias; [parameters] for anything else."""
    parts = name.split(".")
    shapes = weight_shapes(spec.hidden_sizes)
    if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(shapes):
        out, in_ = shapes[int(parts[1])]
        if parts[2] == "weight" and out * in_ == parameters:
            return [out, in_]
        if parts[2] == "bias" and out == parameters:
            return [out]
    return [parameters]


@dataclass(frozen=True)
class _Run:
    """A run with its spec parsed once and its measured layers."""

    row: Run
    spec: RunSpec
    layers: list[_Layer]


def _with_layers(session: Session, runs: Sequence[Run]) -> list[_Run]:
    by_run: dict[int, list[_Layer]] = defaultdict(list)
    rows = session.execute(
        select(RunLayer.run_id, RunLayer.index, RunLayer.name, RunLayer.parameters)
        .where(RunLayer.run_id.in_([r.id for r in runs]))
        .order_by(RunLayer.run_id, RunLayer.index)
    )
    specs = {r.id: RunSpec.model_validate(r.spec) for r in runs}
    for run_id, index, name, parameters in rows:
        by_run[run_id].append(
            _Layer(index, name, parameters, _shape(name, parameters, specs[run_id]))
        )
    return [_Run(r, specs[r.id], by_run[r.id]) for r in runs]


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


def weight_stats(session: Session, run: Run) -> WeightStatsOut:
    (measured,) = _with_layers(session, [run])
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
                index=la.index,
                name=la.name,
                parameters=la.parameters,
                shape=la.shape,
                variance=variance[la.index],
            )
            for la in measured.layers
        ],
    )


def _tolerance_index(run: _Run, tol: float) -> int:
    """Where ``tol`` is in the run's tolerances; NotComputed lists them if it is not there."""
    for i, t in enumerate(run.spec.tolerances):
        # Lenient only about float spelling (1e-3 vs 0.001): 0 matches nothing but 0.
        if math.isclose(t, tol, rel_tol=1e-9, abs_tol=0.0):
            return i
    raise NotComputed(
        f"run {run.row.id} has no results for tol={tol:g}; it computed {run.spec.tolerances}"
    )


def _constancy(
    session: Session, runs: Sequence[_Run], tolerances: Sequence[Sequence[int]]
) -> list[list[ConstancyOut]]:
    """ConstancyOut of each run at each of its tolerance indexes, counts read in one query."""
    wanted = {(run.row.id, t) for run, ts in zip(runs, tolerances, strict=True) for t in ts}
    # counts[(run, tolerance index)][layer index] = [count per epoch], epochs ascending
    counts: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    epochs: dict[tuple[int, int], list[int]] = defaultdict(list)
    rows = session.execute(
        select(
            ConstancyCount.run_id,
            ConstancyCount.tolerance_index,
            ConstancyCount.epoch,
            ConstancyCount.layer_index,
            ConstancyCount.count,
        )
        .where(
            ConstancyCount.run_id.in_({run_id for run_id, _ in wanted}),
            ConstancyCount.tolerance_index.in_({t for _, t in wanted}),
        )
        # The primary key's order: epochs, then layers, ascending within each run.
        .order_by(
            ConstancyCount.run_id,
            ConstancyCount.epoch,
            ConstancyCount.layer_index,
            ConstancyCount.tolerance_index,
        )
    )
    for run_id, t, epoch, layer, count in rows:
        key = (run_id, t)
        if key not in wanted:
            continue
        seen = epochs[key]
        if not seen or seen[-1] != epoch:
            seen.append(epoch)
        counts[key][layer].append(count)
    views = []
    for run, ts in zip(runs, tolerances, strict=True):
        weights = scopes.weight_layers([la.name for la in run.layers])
        per_run = []
        for t in ts:
            key = (run.row.id, t)
            layers = [
                LayerConstancy(
                    index=la.index,
                    name=la.name,
                    parameters=la.parameters,
                    shape=la.shape,
                    percent=[100.0 * c / la.parameters for c in counts[key][la.index]],
                )
                for la in run.layers
            ]
            percents = [layers[i].percent for i in weights]
            per_run.append(
                ConstancyOut(
                    run_id=run.row.id,
                    tolerance=run.spec.tolerances[t],
                    basis=run.spec.basis,
                    epochs=epochs[key],
                    layers=layers,
                    mean=scopes.mean(percents),
                    last_two_mean=scopes.mean(percents[-2:]),
                )
            )
        views.append(per_run)
    return views


def constancy(session: Session, run: Run, tol: float) -> ConstancyOut:
    """Per-layer % of weights constant from epoch e-1 to e, their mean and last-two mean.

    ``layers`` lists every measured tensor (bias vectors too, with ``include_biases``); the
    means are over the layers' weight matrices only, as in the seed."""
    (measured,) = _with_layers(session, [run])
    return _constancy(session, [measured], [[_tolerance_index(measured, tol)]])[0][0]


def constancy_all(session: Session, run: Run) -> ConstancyAllOut:
    (measured,) = _with_layers(session, [run])
    indexes = list(range(len(measured.spec.tolerances)))
    return ConstancyAllOut(
        run_id=run.id,
        basis=measured.spec.basis,
        tolerances=measured.spec.tolerances,
        results=_constancy(session, [measured], [indexes])[0],
    )


def _scoped(view: ConstancyOut, scope: Scope) -> list[float]:
    return scopes.select(
        scope,
        {la.index: la.percent for la in view.layers},
        {"all": view.mean, "last2": view.last_two_mean},
        f"run {view.run_id}",
    )


def _compare(
    runs: Sequence[_Run], views: list[list[ConstancyOut]], scope: Scope
) -> list[CompareOut]:
    """views[run][k] of the k-th compared tolerance → one CompareOut per tolerance."""
    return [
        CompareOut(
            tolerance=views[0][k].tolerance,
            scope=str(scope),
            runs=[
                CompareRun(
                    run_id=run.row.id,
                    name=run.row.name,
                    weight_decay=run.spec.weight_decay,
                    basis=run.spec.basis,
                    epochs=per_run[k].epochs,
                    percent=_scoped(per_run[k], scope),
                )
                for run, per_run in zip(runs, views, strict=True)
            ],
        )
        for k in range(len(views[0]))
    ]


def compare(session: Session, runs: Sequence[Run], tol: float, scope: Scope) -> CompareOut:
    """The runs side by side at one tolerance: one series per run for the scope."""
    measured = _with_layers(session, runs)
    indexes = [[_tolerance_index(run, tol)] for run in measured]
    return _compare(measured, _constancy(session, measured, indexes), scope)[0]


def compare_all(session: Session, runs: Sequence[Run], scope: Scope) -> CompareAllOut:
    """The runs side by side at every tolerance they all computed, ascending."""
    measured = _with_layers(session, runs)
    shared = set(measured[0].spec.tolerances)
    for run in measured[1:]:
        shared &= set(run.spec.tolerances)
    if not shared:
        listed = "; ".join(f"run {r.row.id}: {r.spec.tolerances}" for r in measured)
        raise NotComputed(f"the runs share no tolerance ({listed})")
    tolerances = sorted(shared)
    indexes = [[run.spec.tolerances.index(t) for t in tolerances] for run in measured]
    return CompareAllOut(
        scope=str(scope),
        tolerances=tolerances,
        results=_compare(measured, _constancy(session, measured, indexes), scope),
    )
