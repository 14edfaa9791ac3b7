"""The views of runs' training and constancy: metrics, constancy, weight variances, and runs
compared. Each is declared once (server/views/registry.py)."""

from typing import Annotated

from fastapi import Query

from server.api.deps import SessionDep, SettingsDep
from server.api.routers.params import RunId, RunIds, Scope, Tolerance
from server.core.schemas import (
    CompareAllOut,
    CompareOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    WeightStatsOut,
)
from server.core.scope import FigureScope
from server.store import crud
from server.views import analysis, posthoc
from server.views.figures.draw import (
    MetricName,
    draw_compare,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    label_of_row,
)
from server.views.registry import Panel, Result, view

FigureScopeQuery = Annotated[
    FigureScope,
    Query(
        description="PNG: layers (a line each), all (mean of all layers), last2 (of the last two)"
    ),
]
MetricQuery = Annotated[MetricName, Query(description="PNG: loss or accuracy (JSON has both)")]
CONSTANT = "% of weights constant between epochs, a panel per tolerance"


@view(
    "metrics",
    "/runs/{run_id}/metrics",
    subject="run",
    summary="Loss and accuracy (fractions) per epoch so far",
    model=MetricsOut,
    draw=draw_metrics,
    not_found="No run with that id",
    tags=["runs"],
    panels=[
        Panel("run", "Train and test loss", {"metric": "loss"}),
        Panel("run", "Train and test accuracy", {"metric": "accuracy"}),
    ],
)
def get_metrics(run_id: RunId, session: SessionDep, metric: MetricQuery = "loss") -> Result:
    """PNG: train vs test ``metric`` per epoch."""
    run = crud.get_run(session, run_id)
    return Result(analysis.metrics(session, run), (metric, label_of_row(run)))


@view(
    "constancy",
    "/runs/{run_id}/constancy",
    subject="run",
    summary="% of each layer's weights constant from epoch e-1 to e",
    model=ConstancyOut | ConstancyAllOut,
    draw=draw_constancy,
    not_found="Unknown run or tolerance not computed",
    tags=["runs"],
    panels=[
        Panel("run", f"{CONSTANT}: each layer", {"scope": "layers"}),
        Panel("run", f"{CONSTANT}: mean of all layers", {"scope": "all"}),
        Panel("run", f"{CONSTANT}: mean of the last two layers", {"scope": "last2"}),
    ],
)
def get_constancy(
    run_id: RunId,
    session: SessionDep,
    settings: SettingsDep,
    tol: Tolerance = None,
    scope: FigureScopeQuery = "layers",
) -> Result:
    """Per layer, the mean of all layers and of the last two; without ``tol``, every tolerance.

    A ``tol`` the run did not measure is read from its movement spectrum when it is on the
    ladder, or computed exactly from its snapshots when it has them (``keep_snapshots``), as
    in every view that takes ``tol``.

    PNG: one panel per tolerance (one with ``tol``), drawing what ``scope`` says."""
    run = crud.get_run(session, run_id)
    data: ConstancyOut | ConstancyAllOut = (
        analysis.constancy_all(session, run)
        if tol is None
        else posthoc.constancy(session, run, tol, settings.run_files)
    )
    return Result(data, (scope, label_of_row(run)))


@view(
    "weights",
    "/runs/{run_id}/weights",
    subject="run",
    summary="Each layer's weight variance per epoch (epoch 0 = initial weights)",
    model=WeightStatsOut,
    draw=draw_weight_stats,
    not_found="No run with that id",
    tags=["runs"],
    panels=[Panel("run", "Variance of each layer's weights (epoch 0: initial)")],
)
def get_weight_stats(run_id: RunId, session: SessionDep) -> Result:
    run = crud.get_run(session, run_id)
    return Result(analysis.weight_stats(session, run), (label_of_row(run),))


@view(
    "compare",
    "/compare",
    subject="runs",
    summary="Runs side by side: % of weights constant per epoch at a tolerance",
    model=CompareOut | CompareAllOut,
    draw=draw_compare,
    not_found="Unknown run, or a tolerance/layer not computed",
    tags=["compare"],
    panels=[Panel("compare", "% of weights constant between epochs, {scope}, {which}")],
)
def compare_runs(
    session: SessionDep,
    settings: SettingsDep,
    runs: RunIds,
    tol: Tolerance = None,
    scope: Scope = "all",
) -> Result:
    """One entry per run at ``tol``; without ``tol``, one result per tolerance the runs share.
    A ``tol`` resolves for each run as in ``GET /runs/{run_id}/constancy``: its own
    tolerances, its movement spectrum, or its snapshots.

    PNG: one panel per tolerance, one line per run (in the order of ``runs``)."""
    found = crud.get_runs(session, runs)
    data: CompareOut | CompareAllOut = (
        analysis.compare_all(session, found, scope)
        if tol is None
        else analysis.compare_at(
            posthoc.percentages_at(session, found, tol, settings.run_files), scope
        )
    )
    return Result(data)
