"""The analysis views as tidy tables: one row per value, for ``format=csv``.

Pure functions from the views' response models to CSV text. Floats are written as ``repr``
writes them (Python's shortest round-tripping form), so every number reads back equal to the
JSON's. Column names are shared between the views: ``run_id``, ``tolerance``, ``epoch``,
``layer`` (a layer's index, or ``all``/``last2`` for the means over the layers, the scopes of
``/compare``), ``percent``, and the exact counts ``parameters``, ``constant``, ``explained``,
``units``, ``dead``."""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from pydantic import BaseModel

from server.core.schemas import (
    CompareAllOut,
    CompareOut,
    CompareSpectrumOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    SpectrumOut,
    SweepConstancyAllOut,
    SweepConstancyOut,
    SweepDifferenceOut,
    SweepMetricsOut,
    SweepSummaryOut,
    UnitsOut,
    WeightStatsOut,
)

Row = Sequence[Any]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds")


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: list[Row]

    def csv(self) -> str:
        out = io.StringIO()
        # csv writes floats with repr and None as an empty field.
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()


@singledispatch
def table(view: BaseModel) -> Table:
    """The tidy table of an analysis view."""
    raise TypeError(f"no table for {type(view).__name__}")


def csv_text(view: BaseModel) -> str:
    return table(view).csv()


@table.register
def _metrics(view: MetricsOut) -> Table:
    rows = [
        (view.run_id, epoch, metric, value)
        for metric in METRICS
        for epoch, value in zip(view.epochs, getattr(view, metric), strict=True)
    ]
    return Table(columns=("run_id", "epoch", "metric", "value"), rows=rows)


CONSTANCY_COLUMNS = (
    "run_id",
    "tolerance",
    "basis",
    "epoch",
    "layer",
    "name",
    "parameters",
    "constant",
    "percent",
)


def _constancy_rows(view: ConstancyOut) -> Iterator[Row]:
    head = (view.run_id, view.tolerance, view.basis)
    for layer in view.layers:
        for epoch, percent in zip(view.epochs, layer.percent, strict=True):
            # The stored count behind the percentage (100 * count / parameters); rounding
            # recovers it exactly for any layer size a run can have.
            constant = round(percent * layer.parameters / 100)
            yield (*head, epoch, layer.index, layer.name, layer.parameters, constant, percent)
    # The means are of percentages (unweighted, over the weight matrices): no count behind them.
    for scope, series in (("all", view.mean), ("last2", view.last_two_mean)):
        for epoch, percent in zip(view.epochs, series, strict=True):
            yield (*head, epoch, scope, None, None, None, percent)


def _constancy_table(views: Iterable[ConstancyOut]) -> Table:
    rows = [row for view in views for row in _constancy_rows(view)]
    return Table(columns=CONSTANCY_COLUMNS, rows=rows)


@table.register
def _constancy(view: ConstancyOut) -> Table:
    return _constancy_table([view])


@table.register
def _constancy_all(view: ConstancyAllOut) -> Table:
    return _constancy_table(view.results)


@table.register
def _weights(view: WeightStatsOut) -> Table:
    rows = [
        (view.run_id, epoch, layer.index, layer.name, layer.parameters, variance)
        for layer in view.layers
        for epoch, variance in zip(view.epochs, layer.variance, strict=True)
    ]
    return Table(columns=("run_id", "epoch", "layer", "name", "parameters", "variance"), rows=rows)


COMPARE_COLUMNS = ("tolerance", "layer", "run_id", "name", "weight_decay", "epoch", "percent")


def _compare_rows(view: CompareOut) -> Iterator[Row]:
    for run in view.runs:
        for epoch, percent in zip(run.epochs, run.percent, strict=True):
            yield (
                view.tolerance,
                view.scope,
                run.run_id,
                run.name,
                run.weight_decay,
                epoch,
                percent,
            )


@table.register
def _compare(view: CompareOut) -> Table:
    return Table(columns=COMPARE_COLUMNS, rows=list(_compare_rows(view)))


@table.register
def _compare_all(view: CompareAllOut) -> Table:
    rows = [row for result in view.results for row in _compare_rows(result)]
    return Table(columns=COMPARE_COLUMNS, rows=rows)


# --- the mechanism: dead units and the movement spectrum ---

UNITS_COLUMNS = (
    "run_id",
    "epoch",
    "layer",
    "name",
    "parameters",
    "constant",
    "explained",
    "units",
    "dead",
)


@table.register
def _units(view: UnitsOut) -> Table:
    """A row per weight matrix and epoch: its exactly unchanged weights (``constant`` of
    ``parameters``) and those in a dead unit's row or column (``explained``), with the hidden
    layer after it (the ReLU after Linear ``layer``): its ``units`` and how many were ``dead``.
    The output layer has no hidden layer after it: ``units`` and ``dead`` are empty there. Which
    units were dead (``dead_units``) is in the JSON only."""
    hidden = {h.layer: h for h in view.hidden}
    rows = []
    for weights in view.weights:
        after = hidden.get(weights.layer)
        dead: Sequence[int | None] = after.dead if after else [None] * len(view.epochs)
        for epoch, constant, explained, n_dead in zip(
            view.epochs, weights.constant, weights.explained, dead, strict=True
        ):
            rows.append(
                (view.run_id, epoch, weights.layer, weights.name, weights.parameters)
                + (constant, explained, after.units if after else None, n_dead)
            )
    return Table(columns=UNITS_COLUMNS, rows=rows)


# The spectrum's rows are the constancy table's at the ladder's tolerances, without the means.
SPECTRUM_COLUMNS = CONSTANCY_COLUMNS


def _spectrum_rows(view: SpectrumOut) -> Iterator[Row]:
    """Tolerance by tolerance, then layer by layer, as the constancy table orders its rows."""
    for k, tolerance in enumerate(view.tolerances):
        for layer in view.layers:
            for epoch, per_tolerance in zip(view.epochs, layer.percent, strict=True):
                percent = per_tolerance[k]
                # The stored count behind the percentage, recovered as in _constancy_rows.
                constant = round(percent * layer.parameters / 100)
                yield (
                    view.run_id,
                    tolerance,
                    view.basis,
                    epoch,
                    layer.index,
                    layer.name,
                    layer.parameters,
                    constant,
                    percent,
                )


@table.register
def _spectrum(view: SpectrumOut) -> Table:
    return Table(columns=SPECTRUM_COLUMNS, rows=list(_spectrum_rows(view)))


# Each run's spectrum rows after the run's name and weight decay (as /compare names runs);
# the layer is told by its index alone (``name`` is the run's, as in the compare table).
COMPARE_SPECTRUM_COLUMNS = (
    "run_id",
    "name",
    "weight_decay",
    "basis",
    "tolerance",
    "epoch",
    "layer",
    "parameters",
    "constant",
    "percent",
)


@table.register
def _compare_spectrum(view: CompareSpectrumOut) -> Table:
    rows = [
        (run.run_id, run.name, run.weight_decay, basis, tolerance, epoch, layer)
        + (parameters, constant, percent)
        for run in view.runs
        for (_, tolerance, basis, epoch, layer, _, parameters, constant, percent) in (
            _spectrum_rows(run)
        )
    ]
    return Table(columns=COMPARE_SPECTRUM_COLUMNS, rows=rows)


# --- sweeps: one row per group and epoch (or point), a column per grouping field ---


def _sweep_series_rows(
    head: tuple[Any, ...], by: Sequence[str], group: Any, mean: Any, low: Any, high: Any
) -> Iterator[Row]:
    values = tuple(group.values[field] for field in by)
    for i, epoch in enumerate(group.epochs):
        yield (
            *head,
            *values,
            group.n,
            epoch,
            mean[i],
            None if low is None else low[i],
            None if high is None else high[i],
        )


def _sweep_constancy_table(views: Sequence[SweepConstancyOut]) -> Table:
    by = views[0].by if views else []
    rows = [
        row
        for view in views
        for g in view.groups
        for row in _sweep_series_rows(
            (view.sweep_id, view.tolerance, view.scope), by, g, g.mean, g.ci_low, g.ci_high
        )
    ]
    columns = ("sweep_id", "tolerance", "layer", *by, "n", "epoch", "mean", "ci_low", "ci_high")
    return Table(columns=columns, rows=rows)


@table.register
def _sweep_constancy(view: SweepConstancyOut) -> Table:
    return _sweep_constancy_table([view])


@table.register
def _sweep_constancy_all(view: SweepConstancyAllOut) -> Table:
    return _sweep_constancy_table(view.results)


@table.register
def _sweep_metrics(view: SweepMetricsOut) -> Table:
    rows = [
        row
        for g in view.groups
        for metric in METRICS[:4]
        for row in _sweep_series_rows(
            (view.sweep_id, metric),
            view.by,
            g,
            getattr(g, metric).mean,
            getattr(g, metric).ci_low,
            getattr(g, metric).ci_high,
        )
    ]
    columns = ("sweep_id", "metric", *view.by, "n", "epoch", "mean", "ci_low", "ci_high")
    return Table(columns=columns, rows=rows)


@table.register
def _sweep_summary(view: SweepSummaryOut) -> Table:
    rows = [
        (
            view.sweep_id,
            view.epoch,
            result.tolerance,
            line.scope,
            *(p.values[field] for field in view.by),
            p.n,
            p.mean,
            p.sd,
            p.ci_low,
            p.ci_high,
        )
        for result in view.results
        for line in result.lines
        for p in line.points
    ]
    columns = ("sweep_id", "epoch", "tolerance", "layer", *view.by, "n", "mean", "sd")
    return Table(columns=(*columns, "ci_low", "ci_high"), rows=rows)


@table.register
def _sweep_difference(view: SweepDifferenceOut) -> Table:
    rows = [
        (
            view.sweep_id,
            view.tolerance,
            view.scope,
            view.method,
            view.a.index,
            view.b.index,
            epoch,
            d,
            None if view.ci_low is None else view.ci_low[i],
            None if view.ci_high is None else view.ci_high[i],
            None if view.df is None else view.df[i],
        )
        for i, (epoch, d) in enumerate(zip(view.epochs, view.difference, strict=True))
    ]
    columns = ("sweep_id", "tolerance", "layer", "method", "a", "b", "epoch", "difference")
    return Table(columns=(*columns, "ci_low", "ci_high", "df"), rows=rows)
