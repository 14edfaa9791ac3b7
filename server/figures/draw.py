"""Drawing: the API's response models as PNG bytes, and the look every figure shares.

Each ``draw_*`` takes a response model from server.schemas (what the JSON view returns), the
FigureOptions and what else the figure needs (hashable: it is part of the render-cache key), and
returns PNG bytes. Only matplotlib's object-oriented API with the Agg canvas: no pyplot, so no
global figure state, and figures can be drawn in worker threads."""

import io
import math
from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, ConfigDict, Field

from server import scope as scopes
from server.schemas import (
    CompareAllOut,
    CompareOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    RunOut,
    WeightStatsOut,
)
from server.scope import FigureScope

MetricName = Literal["loss", "accuracy"]


class FigureOptions(BaseModel):
    """``width``/``height`` in pixels and ``dpi``; the PNG is exactly width × height.

    Text and lines are sized in points, so a higher dpi draws them larger on the same pixels.
    Frozen so that it can be part of a render-cache key. Routes take it as query parameters
    (out-of-range values are then a 422)."""

    model_config = ConfigDict(frozen=True)

    width: Annotated[int, Field(ge=200, le=4000, description="figure width in pixels")] = 1000
    height: Annotated[int, Field(ge=200, le=4000, description="figure height in pixels")] = 750
    dpi: Annotated[int, Field(ge=50, le=300, description="dots per inch")] = 100


def run_label(run_id: int, name: str | None, weight_decay: float) -> str:
    """How a run is named in titles and legends: id, name, and the weight decay it varies."""
    named = f"run {run_id} “{name}”" if name else f"run {run_id}"
    return f"{named} (weight decay {weight_decay:g})"


def label_of(run: RunOut) -> str:
    return run_label(run.id, run.name, run.spec.weight_decay)


# --- the shared look ---

PERCENT_CONSTANT = "% of weights constant"
# Markers only while the points are few enough to be told apart.
MARKER_MAX_POINTS = 30


def new_figure(options: FigureOptions, panels: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of exactly options.width × options.height pixels with a near-square grid of
    panels (2×2 for the seed's four tolerances) and a suptitle."""
    fig = Figure(
        figsize=(options.width / options.dpi, options.height / options.dpi),
        dpi=options.dpi,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    cols = math.ceil(math.sqrt(panels))
    rows = math.ceil(panels / cols)
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[panels:]:
        unused.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:panels]


def layer_colours(count: int) -> list[tuple[float, float, float, float]]:
    """Light to dark in layer order, as in the seed's figures (none before a run has layers)."""
    cmap = colormaps["Blues"]
    return [cmap(x) for x in np.linspace(0.35, 1.0, count)] if count != 1 else [cmap(1.0)]


def series_colours(count: int) -> list[tuple[float, float, float, float]]:
    """Distinct hues for things that are not ordered (runs, train vs test)."""
    cmap = colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(count)]


def plot_line(ax: Axes, x: Sequence[int], y: Sequence[float], label: str, colour: object) -> None:
    # Non-finite values (a diverged loss) become gaps instead of breaking the autoscale.
    values = np.asarray(y, dtype=float)
    values[~np.isfinite(values)] = np.nan
    marker = "o" if len(x) <= MARKER_MAX_POINTS else None
    ax.plot(x, values, label=label, color=colour, marker=marker, markersize=3, linewidth=1.6)


def finish_panel(ax: Axes, title: str | None, ylabel: str, empty: bool) -> None:
    """Axis labels with units, integer epochs, y from 0, a grid; says so when there is no data."""
    if title:
        ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if empty:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)


def add_legend(fig: Figure, ax: Axes) -> None:
    """One legend for the whole figure, below the panels, so it never hides a line; none while
    there is nothing to tell apart."""
    handles, labels = ax.get_legend_handles_labels()
    if any(len(line.get_xdata()) for line in ax.get_lines()):
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


# --- the views ---


def draw_constancy(
    data: ConstancyOut | ConstancyAllOut, options: FigureOptions, scope: FigureScope, label: str
) -> bytes:
    """One panel per tolerance (a 2×2 grid for the seed's four); per layer, light to dark, or the
    all-layer / last-two-layer mean."""
    results = data.results if isinstance(data, ConstancyAllOut) else [data]
    title = (
        f"{label}\n{PERCENT_CONSTANT} between epochs, {scopes.describe(scope)}"
        f" (change ≤ tolerance × |{data.basis} value|)"
    )
    fig, axes = new_figure(options, len(results), title)
    for ax, result in zip(axes, results, strict=True):
        if scope == "layers":
            colours = layer_colours(len(result.layers))
            for layer, colour in zip(result.layers, colours, strict=True):
                plot_line(ax, result.epochs, layer.percent, f"layer {layer.index}", colour)
        else:
            values = result.mean if scope == "all" else result.last_two_mean
            plot_line(ax, result.epochs, values, scopes.describe(scope), layer_colours(1)[0])
        finish_panel(ax, f"tolerance {result.tolerance:g}", PERCENT_CONSTANT, not result.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_compare(data: CompareOut | CompareAllOut, options: FigureOptions) -> bytes:
    """The seed's run-vs-run comparison: one panel per tolerance, one colour per run."""
    results = data.results if isinstance(data, CompareAllOut) else [data]
    labels = [run_label(r.run_id, r.name, r.weight_decay) for r in results[0].runs]
    named = " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"
    title = f"{named}\n{PERCENT_CONSTANT} between epochs, {scopes.describe(data.scope)}"
    fig, axes = new_figure(options, len(results), title)
    colours = series_colours(len(labels))
    for ax, result in zip(axes, results, strict=True):
        # Every panel lists the same runs in the request's order.
        for run, text, colour in zip(result.runs, labels, colours, strict=True):
            plot_line(ax, run.epochs, run.percent, text, colour)
        empty = not any(run.epochs for run in result.runs)
        finish_panel(ax, f"tolerance {result.tolerance:g}", PERCENT_CONSTANT, empty)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_metrics(data: MetricsOut, options: FigureOptions, metric: MetricName, label: str) -> bytes:
    """Train vs test loss, or accuracy in %, per epoch (the seed's training plots)."""
    if metric == "loss":
        curves: Sequence[tuple[str, Sequence[float]]] = [
            ("train", data.train_loss),
            ("test", data.test_loss),
        ]
        ylabel = "cross-entropy loss"
    else:
        curves = [
            ("train", [100 * a for a in data.train_accuracy]),
            ("test", [100 * a for a in data.test_accuracy]),
        ]
        ylabel = "accuracy (%)"
    fig, axes = new_figure(options, 1, f"{label}\ntrain vs test {metric} per epoch")
    for (name, values), colour in zip(curves, series_colours(len(curves)), strict=True):
        plot_line(axes[0], data.epochs, values, name, colour)
    finish_panel(axes[0], None, ylabel, empty=not data.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_weight_stats(data: WeightStatsOut, options: FigureOptions, label: str) -> bytes:
    """Each layer's weight variance per epoch (epoch 0 = initial weights), light to dark."""
    fig, axes = new_figure(options, 1, f"{label}\nvariance of each layer's weights per epoch")
    colours = layer_colours(len(data.layers))
    for layer, colour in zip(data.layers, colours, strict=True):
        plot_line(axes[0], data.epochs, layer.variance, f"layer {layer.index}", colour)
    finish_panel(axes[0], None, "weight variance", empty=not data.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)
