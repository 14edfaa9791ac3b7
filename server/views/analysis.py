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

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.core import scope as scopes
from server.core.errors import NotComputed
from server.core.experiment import weight_shapes
from server.core.schemas import (
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
from server.core.scope import Scope
from server.store.models import EpochCounts, EpochMetrics, LayerEpochStats, Run, RunLayer


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
class MeasuredRun:
    """A run with its spec parsed once and its measured layers."""

    row: Run
    spec: RunSpec
    layers: list[_Layer]


def with_layers(session: Session, runs: Sequence[Run]) -> list[MeasuredRun]:
    """Each run with its spec parsed once and its measured layers, all in one query."""
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
    return [MeasuredRun(r, specs[r.id], by_run[r.id]) for r in runs]


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
    (measured,) = with_layers(session, [run])
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


def matching(tolerances: Sequence[float], tol: float) -> int | None:
    """Where ``tol`` is in ``tolerances``: lenient only about float spelling (1e-3 vs 0.001), so
    0 matches nothing but 0."""
    for i, t in enumerate(tolerances):
        if math.isclose(t, tol, rel_tol=1e-9, abs_tol=0.0):
            return i
    return None


def _tolerance_index(run: MeasuredRun, tol: float) -> int:
    """Where ``tol`` is in the run's tolerances; NotComputed lists them if it is not there."""
    index = matching(run.spec.tolerances, tol)
    if index is None:
        raise NotComputed(
            f"run {run.row.id} has no results for tol={tol:g}; it computed {run.spec.tolerances}"
        )
    return index


def stored_counts(
    session: Session, runs: Sequence[MeasuredRun]
) -> dict[int, tuple[list[int], np.ndarray]]:
    """Each run's stored epochs and its counts as an int64 array epochs × layers × tolerances,
    all runs in one query."""
    rows: dict[int, tuple[list[int], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    for run_id, epoch, counts in session.execute(
        select(EpochCounts.run_id, EpochCounts.epoch, EpochCounts.counts)
        .where(EpochCounts.run_id.in_([run.row.id for run in runs]))
        .order_by(EpochCounts.run_id, EpochCounts.epoch)
    ):
        epochs, per_epoch = rows[run_id]
        epochs.append(epoch)
        per_epoch.append(counts)
    arrays = {}
    for run in runs:
        epochs, per_epoch = rows[run.row.id]
        shape = (len(epochs), len(run.layers), len(run.spec.tolerances))
        flat = np.concatenate(per_epoch) if per_epoch else np.zeros(0, dtype=np.int64)
        arrays[run.row.id] = (epochs, flat.reshape(shape))
    return arrays


@dataclass(frozen=True)
class _Percent:
    """One run's percentages: per layer (epochs × layers × tolerances) and the means over the
    layers (epochs × tolerances)."""

    epochs: list[int]
    layers: np.ndarray
    mean: np.ndarray
    last_two_mean: np.ndarray


def _percent(run: MeasuredRun, epochs: list[int], counts: np.ndarray) -> _Percent:
    """``100 * count / parameters`` of each layer at every tolerance, and the unweighted means
    over the weight matrices (summed layer by layer: the same floats as Python's sum)."""
    parameters = np.array([la.parameters for la in run.layers], dtype=np.int64)
    layers = 100.0 * counts / parameters[:, None]
    weights = scopes.weight_layers([la.name for la in run.layers])

    def mean(of: list[int]) -> np.ndarray:
        if not of:
            return np.zeros(layers.shape[::2])
        total = layers[:, of[0]].copy()
        for i in of[1:]:
            total += layers[:, i]
        return total / len(of)

    return _Percent(epochs, layers, mean(weights), mean(weights[-2:]))


def _constancy_out(
    run: MeasuredRun, percent: _Percent, t: int, tolerance: float | None = None
) -> ConstancyOut:
    """The view at tolerance index ``t`` (of the run's own tolerances unless ``tolerance``)."""
    return ConstancyOut(
        run_id=run.row.id,
        tolerance=run.spec.tolerances[t] if tolerance is None else tolerance,
        basis=run.spec.basis,
        epochs=percent.epochs,
        layers=[
            LayerConstancy(
                index=la.index,
                name=la.name,
                parameters=la.parameters,
                shape=la.shape,
                percent=percent.layers[:, i, t].tolist(),
            )
            for i, la in enumerate(run.layers)
        ],
        mean=percent.mean[:, t].tolist(),
        last_two_mean=percent.last_two_mean[:, t].tolist(),
    )


def constancy(session: Session, run: Run, tol: float) -> ConstancyOut:
    """Per-layer % of weights constant from epoch e-1 to e, their mean and last-two mean.

    ``layers`` lists every measured tensor (bias vectors too, with ``include_biases``); the
    means are over the layers' weight matrices only, as in the seed."""
    (measured,) = with_layers(session, [run])
    t = _tolerance_index(measured, tol)
    epochs, counts = stored_counts(session, [measured])[run.id]
    return _constancy_out(measured, _percent(measured, epochs, counts), t)


def constancy_all(session: Session, run: Run) -> ConstancyAllOut:
    (measured,) = with_layers(session, [run])
    percent = _percent(measured, *stored_counts(session, [measured])[run.id])
    return ConstancyAllOut(
        run_id=run.id,
        basis=measured.spec.basis,
        tolerances=measured.spec.tolerances,
        results=[
            _constancy_out(measured, percent, t) for t in range(len(measured.spec.tolerances))
        ],
    )


def _scoped(run: MeasuredRun, percent: _Percent, t: int, scope: Scope) -> list[float]:
    return scopes.select(
        scope,
        {la.index: percent.layers[:, i, t] for i, la in enumerate(run.layers)},
        {"all": percent.mean[:, t], "last2": percent.last_two_mean[:, t]},
        f"run {run.row.id}",
    )


@dataclass(frozen=True)
class RunPercent:
    """A run (spec parsed, layers read) with its percentages at ``tolerances`` (the run's own,
    or one resolved by server.views.posthoc): what the views over many runs compute from."""

    run: MeasuredRun
    percent: _Percent
    tolerances: list[float]

    def tolerance_index(self, tol: float) -> int:
        index = matching(self.tolerances, tol)
        if index is None:
            raise NotComputed(
                f"run {self.run.row.id} has no results for tol={tol:g}; it has {self.tolerances}"
            )
        return index

    def scoped(self, scope: Scope) -> np.ndarray:
        """The scope's percentages, epochs × the run's tolerances; NotComputed names the
        layers the run has when ``scope`` is a layer it lacks."""
        return scopes.pick(
            scope,
            {la.index: self.percent.layers[:, i] for i, la in enumerate(self.run.layers)},
            {"all": self.percent.mean, "last2": self.percent.last_two_mean},
            f"run {self.run.row.id}",
        )


def percent_at(
    run: MeasuredRun, tolerance: float, epochs: list[int], counts: np.ndarray
) -> RunPercent:
    """A run's percentages at one tolerance from its exact counts there (epochs × layers),
    however they were counted (stored, on the spectrum's ladder, or from snapshots)."""
    return RunPercent(run, _percent(run, epochs, counts[:, :, None]), [tolerance])


def constancy_out(item: RunPercent) -> ConstancyOut:
    """The constancy view of a run's percentages at one tolerance."""
    return _constancy_out(item.run, item.percent, 0, item.tolerances[0])


def _percentages(session: Session, runs: Sequence[MeasuredRun]) -> list[RunPercent]:
    counts = stored_counts(session, runs)
    return [
        RunPercent(run, _percent(run, *counts[run.row.id]), run.spec.tolerances) for run in runs
    ]


def percentages(session: Session, runs: Sequence[Run]) -> list[RunPercent]:
    """Every run's percentages, in the order given: one query for all their layers, one for all
    their counts."""
    return _percentages(session, with_layers(session, runs))


def shared_tolerances(runs: Sequence[MeasuredRun]) -> list[float]:
    """The tolerances every run computed, ascending; NotComputed lists each run's if none."""
    shared = set(runs[0].spec.tolerances)
    for run in runs[1:]:
        shared &= set(run.spec.tolerances)
    if not shared:
        listed = "; ".join(f"run {r.row.id}: {r.spec.tolerances}" for r in runs)
        raise NotComputed(f"the runs share no tolerance ({listed})")
    return sorted(shared)


def compare_entry(item: RunPercent, t: int, scope: Scope) -> CompareRun:
    """One run's series in a comparison: tolerance index ``t`` of its percentages, scoped."""
    run, percent = item.run, item.percent
    return CompareRun(
        run_id=run.row.id,
        name=run.row.name,
        weight_decay=run.spec.weight_decay,
        basis=run.spec.basis,
        precision=run.spec.precision,
        epochs=percent.epochs,
        percent=_scoped(run, percent, t, scope),
    )


def compare_at(measured: Sequence[RunPercent], scope: Scope) -> CompareOut:
    """The runs side by side at the one tolerance each has resolved (server.views.posthoc); the
    first run's spelling of it."""
    entries = [compare_entry(item, 0, scope) for item in measured]
    return CompareOut(tolerance=measured[0].tolerances[0], scope=str(scope), runs=entries)


def compare_all(session: Session, runs: Sequence[Run], scope: Scope) -> CompareAllOut:
    """The runs side by side at every tolerance they all computed, ascending."""
    measured = _percentages(session, with_layers(session, runs))
    tolerances = shared_tolerances([m.run for m in measured])
    return CompareAllOut(
        scope=str(scope),
        tolerances=tolerances,
        results=[
            CompareOut(
                tolerance=tol,
                scope=str(scope),
                runs=[compare_entry(m, m.tolerance_index(tol), scope) for m in measured],
            )
            for tol in tolerances
        ],
    )
