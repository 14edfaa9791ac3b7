"""Drawing: the API's response models as PNG bytes, and the look every figure shares.

Each ``draw_*`` takes a response model from server.schemas (what the JSON view returns), the
FigureOptions and what else the figure needs (hashable: it is part of the render-cache key), and
returns PNG bytes. Only matplotlib's object-oriented API with the Agg canvas: no pyplot, so no
global figure state, and figures can be drawn in worker threads."""

import io
import math
import textwrap
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
# The smallest figure admitted: four panels with titles, labels and ticks stay readable.
MIN_WIDTH, MIN_HEIGHT = 400, 300
MIN_TEXT_PIXELS = 9.0
# A character's mean width as a share of the font size (DejaVu Sans), to wrap text to a figure.
CHAR_WIDTH = 0.55


class FigureOptions(BaseModel):
    """``width``/``height`` in pixels and ``dpi``; the PNG is exactly width × height.

    Text and lines are sized in points, so a higher dpi draws them larger on the same pixels.
    Frozen so that it can be part of a render-cache key. Routes take it as query parameters
    (out-of-range values are then a 422)."""

    model_config = ConfigDict(frozen=True)

    width: Annotated[
        int,
        Field(
            ge=MIN_WIDTH,
            le=4000,
            description=f"figure width in pixels, {MIN_WIDTH}..4000 (narrower figures of 2×2 "
            "panels cannot be read)",
        ),
    ] = 1000
    height: Annotated[
        int,
        Field(
            ge=MIN_HEIGHT,
            le=4000,
            description=f"figure height in pixels, {MIN_HEIGHT}..4000 (lower figures of 2×2 "
            "panels cannot be read)",
        ),
    ] = 750
    dpi: Annotated[
        int,
        Field(
            ge=50,
            le=300,
            description="dots per inch, 50..300: a higher dpi draws text larger on the same "
            "pixels, within what the figure's size leaves room for",
        ),
    ] = 100

    @property
    def font_points(self) -> float:
        """The base font size: 10 pt (so dpi scales it), kept between 9 px, still readable,
        and a 1/32 of the figure's smaller side, so that the text of a small figure at a high
        dpi still leaves room for the panels."""
        pixels = 10 * self.dpi / 72
        pixels = min(max(pixels, MIN_TEXT_PIXELS), max(MIN_TEXT_PIXELS, self.min_side / 32))
        return pixels * 72 / self.dpi

    @property
    def min_side(self) -> int:
        return min(self.width, self.height)

    @property
    def line_points(self) -> float:
        """Line width: 1.5 px, thicker on large figures (up to 4 px), whatever the dpi."""
        return min(max(1.5, self.min_side / 400), 4.0) * 72 / self.dpi

    def points(self, pixels: float) -> float:
        """``pixels`` in points at this dpi: pads and tick lengths stay the same on the PNG."""
        return pixels * 72 / self.dpi

    @property
    def font_pixels(self) -> float:
        return self.font_points * self.dpi / 72

    def chars_per_line(self, scale: float = 1.0) -> int:
        """About how many characters of text at ``scale`` × the base font fit across."""
        return max(10, int(self.width / (CHAR_WIDTH * scale * self.font_pixels)))

    @classmethod
    def of(cls, fig: Figure) -> "FigureOptions":
        """The options a figure was made with (new_figure)."""
        width, height = fig.get_size_inches() * fig.dpi
        return cls(width=round(width), height=round(height), dpi=round(fig.dpi))


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
# Series that are not ordered (runs, train vs test) differ in colour, line style and marker,
# so that lines on top of each other (two runs flat at 0%) can still be told apart.
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# Room above and below the data, as a share of its range: no line lies on a frame.
Y_MARGIN = 0.06


def new_figure(options: FigureOptions, panels: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of exactly options.width × options.height pixels with a near-square grid of
    panels (2×2 for the seed's four tolerances) and a suptitle, its text sized to the figure
    (FigureOptions.font_points)."""
    fig = Figure(
        figsize=(options.width / options.dpi, options.height / options.dpi),
        dpi=options.dpi,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    cols = math.ceil(math.sqrt(panels))
    rows = math.ceil(panels / cols)
    size = options.font_points
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[panels:]:
        unused.set_visible(False)
    for ax in axes[:panels]:
        ax.tick_params(
            which="both",
            labelsize=size * 0.85,
            width=options.line_points / 2,
            length=options.points(4),
            pad=options.points(3),
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.label.set_fontsize(size * 0.95)
            axis.labelpad = options.points(3)
        for spine in ax.spines.values():
            spine.set_linewidth(options.line_points / 2)
    # Wrapped to the figure's width: a narrow figure's title does not run off its edges.
    width = options.chars_per_line(1.05)
    wrapped = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    fig.suptitle(wrapped, fontsize=size * 1.05)
    fig.get_layout_engine().set(w_pad=size / 72 / 3, h_pad=size / 72 / 3)
    return fig, axes[:panels]


def layer_colours(count: int) -> list[tuple[float, float, float, float]]:
    """Light to dark in layer order, as in the seed's figures: viridis from light green to dark
    violet, so that neighbouring layers differ in hue as well as lightness and the lightest
    still stands out on white (none before a run has layers)."""
    cmap = colormaps["viridis_r"]
    return [cmap(x) for x in np.linspace(0.25, 1.0, count)] if count != 1 else [cmap(1.0)]


def series_colours(count: int) -> list[tuple[float, float, float, float]]:
    """Distinct hues for things that are not ordered (runs, train vs test)."""
    cmap = colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(count)]


def layer_label(index: int, shape: Sequence[int]) -> str:
    """``layer 0 (3072→512)``: a weight matrix's [out, in] shape as in → out."""
    if len(shape) == 2:
        return f"layer {index} ({shape[1]}→{shape[0]})"
    if len(shape) == 1:
        return f"layer {index} bias ({shape[0]})"
    return f"layer {index}"


def plot_line(
    ax: Axes,
    x: Sequence[int],
    y: Sequence[float],
    label: str,
    colour: object,
    style: int | None = None,
) -> None:
    """A series; ``style`` picks a line style and marker (for series that are not ordered).
    Drawn above the grid and the frame, so a series at 0 shows on the x axis."""
    # Non-finite values (a diverged loss) become gaps instead of breaking the autoscale.
    values = np.asarray(y, dtype=float)
    values[~np.isfinite(values)] = np.nan
    few = len(x) <= MARKER_MAX_POINTS
    marker = MARKERS[style % len(MARKERS)] if style is not None else "o"
    line = FigureOptions.of(ax.figure).line_points  # type: ignore[arg-type]
    ax.plot(
        x,
        values,
        label=label,
        color=colour,
        marker=marker if few else None,
        markevery=None if few else max(1, len(x) // 12),
        linestyle=LINE_STYLES[style % len(LINE_STYLES)] if style is not None else "-",
        linewidth=line,
        markersize=line * 2.5,
        zorder=3,
        clip_on=False,
        # Inside the panel (y margins): it makes no room in the layout (an empty one would
        # collapse it).
        in_layout=False,
    )


def _epoch_ticks(ax: Axes, epochs: Sequence[int]) -> None:
    """Integer epoch ticks that always label the first and last epoch."""
    first, last = min(epochs), max(epochs)
    ticks = [t for t in MaxNLocator(nbins=6, integer=True).tick_values(first, last)]
    ticks = [int(t) for t in ticks if first <= t <= last]
    step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1
    # The last epoch is labelled; a tick too close to it would overlap its label.
    ticks = [t for t in ticks if last - t >= 0.5 * step or t == last]
    for t in (first, last):
        if t not in ticks:
            ticks.append(t)
    ticks = sorted(set(ticks))
    if len(ticks) > 2 and ticks[1] - ticks[0] < 0.5 * step:
        ticks.pop(1)
    ax.set_xticks(ticks)
    pad = max(0.5, 0.02 * (last - first))
    ax.set_xlim(first - pad, last + pad)


YScale = Literal["percent", "auto", "log"]


def finish_panel(
    ax: Axes, title: str | None, ylabel: str, empty: bool, y: YScale = "percent"
) -> None:
    """Axis labels with units, integer epochs (the last one labelled), a grid, and margins so
    that no line lies on a frame. ``y``: percent (a floor just below 0, so a series at 0% is a
    visible line above the x axis), auto (scaled to the data, e.g. a loss), log (variances of
    layers that differ by orders of magnitude). Says so when there is no data."""
    options = FigureOptions.of(ax.figure)  # type: ignore[arg-type]
    if title:
        ax.set_title(title, fontsize=options.font_points, pad=options.points(5))
    ax.set_xlabel("epoch")
    # Wrapped to the panel's height, so labels of stacked panels do not run into each other.
    room = ax.get_position().height * options.height * 0.8
    fits = max(8, int(room / (CHAR_WIDTH * 0.95 * options.font_pixels)))
    ax.set_ylabel(textwrap.fill(ylabel, fits))
    ax.grid(True, alpha=0.3, linewidth=options.line_points / 2)
    if empty:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.text(
            0.5,
            0.5,
            "no epochs yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=FigureOptions.of(ax.figure).font_points,  # type: ignore[arg-type]
            in_layout=False,  # inside the panel: no room to make around it
        )
        return
    epochs = [x for line in ax.get_lines() for x in line.get_xdata()]
    _epoch_ticks(ax, epochs)
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines])
    values = values[np.isfinite(values)]
    if y == "log":
        ax.set_yscale("log")
        positive = values[values > 0]
        if positive.size:
            low, high = positive.min(), positive.max()
            span = max(math.log10(high / low), 0.2)
            ax.set_ylim(low / 10 ** (Y_MARGIN * span), high * 10 ** (Y_MARGIN * span))
        return
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if y == "percent":
        low = min(low, 0.0)
        high = max(high, 1.0)  # a flat 0 line gets an axis up to 1%, not a degenerate one
    span = (high - low) or max(abs(high), 1.0)
    ax.set_ylim(low - Y_MARGIN * span, high + Y_MARGIN * span)


def add_legend(fig: Figure, ax: Axes) -> None:
    """One legend for the whole figure, below the panels, so it never hides a line; none while
    there is nothing to tell apart."""
    handles, labels = ax.get_legend_handles_labels()
    if any(len(line.get_xdata()) for line in ax.get_lines()):
        options = FigureOptions.of(fig)
        # As many columns as fit across the figure (an entry: its handle and its label).
        entry = max(len(label) for label in labels) + 6
        ncols = max(1, min(len(labels), 4, options.chars_per_line(0.9) // entry))
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=ncols,
            fontsize=options.font_points * 0.9,
        )


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
                label = layer_label(layer.index, layer.shape)
                plot_line(ax, result.epochs, layer.percent, label, colour)
        else:
            values = result.mean if scope == "all" else result.last_two_mean
            plot_line(ax, result.epochs, values, scopes.describe(scope), layer_colours(1)[0])
        finish_panel(ax, f"tolerance {result.tolerance:g}", PERCENT_CONSTANT, not result.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_compare(data: CompareOut | CompareAllOut, options: FigureOptions) -> bytes:
    """The seed's run-vs-run comparison: one panel per tolerance, one colour per run."""
    results = data.results if isinstance(data, CompareAllOut) else [data]
    runs = results[0].runs
    labels = [run_label(r.run_id, r.name, r.weight_decay) for r in runs]
    named = " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"
    bases = sorted({r.basis for r in runs})
    if len(bases) > 1:
        # Runs measured against different references are not alike: the legend says which.
        basis = f"MIXED BASES ({' and '.join(bases)}): not directly comparable"
        labels = [f"{text}, basis {r.basis}" for text, r in zip(labels, runs, strict=True)]
    else:
        basis = f"basis {bases[0]}" if bases else ""
    title = (
        f"{named}\n{PERCENT_CONSTANT} between epochs, {scopes.describe(data.scope)}"
        f"{'; ' + basis if basis else ''}"
    )
    fig, axes = new_figure(options, len(results), title)
    colours = series_colours(len(labels))
    for ax, result in zip(axes, results, strict=True):
        # Every panel lists the same runs in the request's order.
        for i, (run, text, colour) in enumerate(zip(result.runs, labels, colours, strict=True)):
            plot_line(ax, run.epochs, run.percent, text, colour, style=i)
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
    for i, ((name, values), colour) in enumerate(
        zip(curves, series_colours(len(curves)), strict=True)
    ):
        plot_line(axes[0], data.epochs, values, name, colour, style=i)
    # A loss is read by its change (2.30 → 2.17), an accuracy against 0.
    scale: YScale = "auto" if metric == "loss" else "percent"
    finish_panel(axes[0], None, ylabel, empty=not data.epochs, y=scale)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_weight_stats(data: WeightStatsOut, options: FigureOptions, label: str) -> bytes:
    """Each layer's weight variance per epoch (epoch 0 = initial weights), light to dark."""
    fig, axes = new_figure(options, 1, f"{label}\nvariance of each layer's weights per epoch")
    colours = layer_colours(len(data.layers))
    for layer, colour in zip(data.layers, colours, strict=True):
        plot_line(
            axes[0], data.epochs, layer.variance, layer_label(layer.index, layer.shape), colour
        )
    # Layers' variances differ by orders of magnitude (1/fan_in): a log axis keeps them apart.
    finish_panel(axes[0], None, "weight variance (log scale)", empty=not data.epochs, y="log")
    add_legend(fig, axes[0])
    return to_png(fig)
