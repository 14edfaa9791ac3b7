"""The PNG of each view, through the render cache: what routes and the report page call.

Each function names its figure's cache key in one place, so a figure drawn for the report is
the one a PNG request gets, and the other way round."""

from collections.abc import Sequence

from server.figures.draw import (
    draw_compare,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    run_label,
)
from server.figures.options import ConstancyScope, FigureOptions, MetricName
from server.render import Renderer, figure_key
from server.schemas import (
    CompareAllOut,
    CompareOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    RunOut,
    WeightStatsOut,
)


def label_of(run: RunOut) -> str:
    return run_label(run.id, run.name, run.spec.weight_decay)


async def constancy_png(
    renderer: Renderer,
    run: RunOut,
    data: ConstancyOut | ConstancyAllOut,
    scope: ConstancyScope,
    options: FigureOptions,
) -> bytes:
    tol = data.tolerance if isinstance(data, ConstancyOut) else None
    key = figure_key("constancy", [run], tol=tol, scope=scope, options=options)
    return await renderer.render_png(key, draw_constancy, data, scope, label_of(run), options)


async def compare_png(
    renderer: Renderer,
    runs: Sequence[RunOut],
    data: CompareOut | CompareAllOut,
    options: FigureOptions,
) -> bytes:
    """``runs`` in the order of the request (it decides the colours)."""
    tol = data.tolerance if isinstance(data, CompareOut) else None
    key = figure_key("compare", runs, tol=tol, scope=data.scope, options=options)
    return await renderer.render_png(key, draw_compare, data, options)


async def metrics_png(
    renderer: Renderer, run: RunOut, data: MetricsOut, metric: MetricName, options: FigureOptions
) -> bytes:
    key = figure_key("metrics", [run], metric=metric, options=options)
    return await renderer.render_png(key, draw_metrics, data, metric, label_of(run), options)


async def weights_png(
    renderer: Renderer, run: RunOut, data: WeightStatsOut, options: FigureOptions
) -> bytes:
    key = figure_key("weights", [run], options=options)
    return await renderer.render_png(key, draw_weight_stats, data, label_of(run), options)
