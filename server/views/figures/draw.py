"""Drawing: the API's response models as PNG bytes, and the look every figure shares.

Each ``draw_*`` takes a response model from server.core.schemas (what the JSON view returns), the
FigureOptions and what else the figure needs (hashable: it is part of the render-cache key), and
returns PNG bytes. Only matplotlib's object-oriented API with the Agg canvas: no pyplot, so no
global figure state, and figures can be drawn in worker threads."""

import io
import math
import textwrap
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, ConfigDict, Field

from server.core import scope as scopes
from server.core.schemas import (
    CompareAllOut,
    CompareOut,
    CompareSpectrumOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    RunOut,
    SpectrumOut,
    SweepConstancyAllOut,
    SweepConstancyOut,
    SweepDifferenceOut,
    SweepMetricsOut,
    SweepSummaryOut,
    UnitsOut,
    WeightStatsOut,
)
from server.core.scope import FigureScope

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


def label_of_row(run: Any) -> str:
    """``label_of`` for a stored run (server.store.models.Run: its spec is a dict)."""
    return run_label(run.id, run.name, run.spec["weight_decay"])


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


def new_figure(
    options: FigureOptions, panels: int, title: str, cols: int | None = None
) -> tuple[Figure, list[Axes]]:
    """A figure of exactly options.width × options.height pixels with a near-square grid of
    panels (2×2 for the seed's four tolerances; ``cols`` columns when given) and a suptitle,
    its text sized to the figure (FigureOptions.font_points)."""
    fig = Figure(
        figsize=(options.width / options.dpi, options.height / options.dpi),
        dpi=options.dpi,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    cols = cols or math.ceil(math.sqrt(panels))
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
# The fill_between of a 95% interval (plot_band): finish_panel fits the axes to it too.
BAND = "interval"


def metric_scale(metric: MetricName) -> YScale:
    """One rule for every figure of a metric: a loss is read by its change (2.30 → 2.17), so
    its axis fits the data; an accuracy against 0."""
    return "auto" if metric == "loss" else "percent"


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
    bands = [
        path.vertices[:, 1]
        for band in ax.collections
        if band.get_gid() == BAND
        for path in band.get_paths()
    ]
    values = np.concatenate(
        [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines] + bands
    )
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
    precisions = sorted({r.precision for r in runs})
    if len(precisions) > 1:
        # float32 rounds away updates float64 keeps: the legend says which run is which.
        basis += f"; MIXED PRECISION ({' and '.join(precisions)})"
        labels = [f"{text}, {r.precision}" for text, r in zip(labels, runs, strict=True)]
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
    finish_panel(axes[0], None, ylabel, empty=not data.epochs, y=metric_scale(metric))
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


# --- the mechanism: dead units and the movement spectrum ---

SPECTRUM_COLOURS = "viridis"
# Contours drawn over a spectrum: where a layer crosses these shares of constant weights.
SPECTRUM_CONTOURS = (10.0, 50.0, 90.0)


def draw_units(data: UnitsOut, options: FigureOptions, label: str) -> bytes:
    """A panel of dead units per hidden layer over the epochs, then one per weight matrix: its
    exactly constant weights and those of them in a dead unit's row or column, in % of it."""
    title = f"{label}\ndead ReLU units, and the exactly constant weights they explain"
    fig, axes = new_figure(options, 1 + len(data.weights), title)
    empty = not data.epochs
    colours = layer_colours(len(data.hidden))
    for hidden, colour in zip(data.hidden, colours, strict=True):
        text = f"hidden layer {hidden.layer} (of {hidden.units})"
        plot_line(axes[0], data.epochs, hidden.dead, text, colour)
    finish_panel(axes[0], "dead units\n(never fired in the epoch)", "units", empty)
    if not empty and data.hidden:
        axes[0].legend(loc="best", fontsize="small")
    constant_colour, explained_colour = series_colours(2)
    for ax, weight in zip(axes[1:], data.weights, strict=True):
        n = weight.parameters
        plot_line(
            ax,
            data.epochs,
            [100 * c / n for c in weight.constant],
            "exactly constant (tolerance 0)",
            constant_colour,
        )
        plot_line(
            ax,
            data.epochs,
            [100 * c / n for c in weight.explained],
            "… of them in a dead unit's row or column",
            explained_colour,
        )
        total, explained = sum(weight.constant), sum(weight.explained)
        share = (
            f"explained: {100 * explained / total:.1f}% (all epochs)" if total else "none constant"
        )
        finish_panel(ax, f"layer {weight.layer} ({n:,} weights)\n{share}", "% of weights", empty)
    if data.weights:
        add_legend(fig, axes[1])
    return to_png(fig)


def _spectrum_panel(
    ax: Axes,
    epochs: Sequence[int],
    tolerances: Sequence[float],
    percent: Sequence[Sequence[float]],
    title: str | None,
    ylabel: str | None = "tolerance (relative change)",
) -> None:
    """Epoch × tolerance heatmap. The tolerances are log-spaced after 0, so their positions are
    a log axis; tolerance 0 (exactly equal) is the bottom row, set off by a line."""
    if title:
        ax.set_title(title)
    ax.set_xlabel("epoch")
    if ylabel:
        ax.set_ylabel(ylabel)
    # Few epoch ticks: heatmap panels are narrow when runs are compared.
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    rows = len(tolerances)
    # Labelled: 0 and the powers of ten (but the one on the row next to 0, whose label would
    # overlap it).
    ticks = [
        i
        for i, t in enumerate(tolerances)
        if t == 0
        or (
            abs(math.log10(t) - round(math.log10(t))) < 1e-9 and not (i == 1 and tolerances[0] == 0)
        )
    ]
    ax.set_yticks(
        ticks, ["0 (exact)" if tolerances[i] == 0 else f"{tolerances[i]:g}" for i in ticks]
    )
    if not epochs:
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.5, rows - 0.5)
        ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)
        return
    values = np.asarray(percent, dtype=float).T  # tolerance × epoch
    left, right = epochs[0] - 0.5, epochs[-1] + 0.5
    ax.imshow(
        values,
        origin="lower",
        aspect="auto",
        cmap=SPECTRUM_COLOURS,
        vmin=0,
        vmax=100,
        extent=(left, right, -0.5, rows - 0.5),
        interpolation="nearest",
    )
    if len(epochs) > 1 and rows > 2:
        lines = ax.contour(
            list(epochs),
            list(range(rows)),
            values,
            levels=SPECTRUM_CONTOURS,
            colors="white",
            linewidths=0.8,
        )
        ax.clabel(lines, fmt="%g%%", fontsize="x-small")
    if tolerances and tolerances[0] == 0:
        ax.axhline(0.5, color="white", linewidth=1.5)


def _spectrum_colourbar(fig: Figure, axes: Sequence[Axes]) -> None:
    scale = colormaps[SPECTRUM_COLOURS]
    mappable = ScalarMappable(Normalize(0, 100), scale)
    fig.colorbar(mappable, ax=list(axes), label=PERCENT_CONSTANT, shrink=0.9)


def draw_spectrum(data: SpectrumOut, options: FigureOptions, label: str) -> bytes:
    """The movement spectrum: a heatmap per layer, epoch × tolerance, colour = % constant."""
    title = (
        f"{label}\n{PERCENT_CONSTANT} between epochs at every tolerance"
        f" (change ≤ tolerance × |{data.basis} value|)"
    )
    fig, axes = new_figure(options, max(1, len(data.layers)), title)
    for ax, layer in zip(axes, data.layers, strict=False):
        name = f"layer {layer.index}" + (" bias" if layer.name.endswith(".bias") else "")
        _spectrum_panel(ax, data.epochs, data.tolerances, layer.percent, name)
    _spectrum_colourbar(fig, axes)
    return to_png(fig)


def draw_compare_spectrum(data: CompareSpectrumOut, options: FigureOptions) -> bytes:
    """The runs' spectra side by side: a row of heatmaps per run, a column per layer."""
    labels = [run_label(r.run_id, r.name, r.weight_decay) for r in data.runs]
    named = " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"
    cols = max([len(r.layers) for r in data.runs] + [1])
    title = f"{named}\n{PERCENT_CONSTANT} between epochs at every tolerance"
    fig, axes = new_figure(options, cols * len(data.runs), title, cols=cols)
    for row, run in enumerate(data.runs):
        # The run's name heads its row, once; the layers head the columns.
        named = f"run {run.run_id}" + (f" “{run.name}”" if run.name else "")
        ylabel = f"{named}, weight decay {run.weight_decay:g}\ntolerance"
        for col in range(cols):
            ax = axes[row * cols + col]
            if col >= len(run.layers):
                ax.set_visible(False)
                continue
            layer = run.layers[col]
            _spectrum_panel(
                ax,
                run.epochs,
                run.tolerances,
                layer.percent,
                f"layer {layer.index}" if row == 0 else None,
                ylabel if col == 0 else None,
            )
    _spectrum_colourbar(fig, axes)
    return to_png(fig)


# --- sweeps: groups of runs with their 95% intervals (server/views/sweeps.py) ---

INTERVAL_ALPHA = 0.18


def sweep_label(sweep_id: int, name: str | None) -> str:
    return f"sweep {sweep_id} “{name}”" if name else f"sweep {sweep_id}"


def _value_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _field_text(field: str) -> str:
    return field.replace("_", " ")


def group_label(values: dict[str, object], n: int) -> str:
    """A group as legends name it: its values and how many runs it averages."""
    named = ", ".join(f"{_field_text(k)} {_value_text(v)}" for k, v in values.items())
    named = named or "all runs"
    return f"{named} (n={n})"


def plot_band(
    ax: Axes,
    x: Sequence[float],
    mean: Sequence[float],
    low: Sequence[float] | None,
    high: Sequence[float] | None,
    label: str,
    colour: object,
    bounds: tuple[float, float],
) -> None:
    """A mean line with its interval shaded (no shading for a single run), cut to ``bounds``,
    the values the quantity can take (the t interval of two runs can reach −200%)."""
    plot_line(ax, x, mean, label, colour)  # type: ignore[arg-type]
    if low is not None and high is not None and len(x):
        ax.fill_between(
            x,
            np.clip(low, *bounds),
            np.clip(high, *bounds),
            color=colour,
            alpha=INTERVAL_ALPHA,
            linewidth=0,
            gid=BAND,
        )


PERCENT_BOUNDS = (0.0, 100.0)


def cut_note(replicates: str, uncut: str) -> str:
    """The note under a table whose percentages' intervals are cut to PERCENT_BOUNDS (the sweep
    page, the reproduction page and its Markdown): ``uncut`` says where the t interval is."""
    low, high = PERCENT_BOUNDS
    return (
        f"* The interval is cut to {low:g}–{high:g}%, the values a percentage can take: with few "
        f"{replicates} the t interval reaches past them ({uncut})."
    )


# A difference of two percentages lies within ±100 percentage points.
DIFFERENCE_BOUNDS = (-100.0, 100.0)
LOSS_BOUNDS = (0.0, math.inf)
INTERVAL_NOTE = (
    "shaded: 95% interval of the mean over seeds (Student's t), cut to the possible values"
)


def draw_sweep_constancy(
    data: SweepConstancyOut | SweepConstancyAllOut, options: FigureOptions, label: str
) -> bytes:
    """One panel per tolerance, one line per group with its interval."""
    results = data.results if isinstance(data, SweepConstancyAllOut) else [data]
    title = (
        f"{label}\n{PERCENT_CONSTANT} between epochs, {scopes.describe(data.scope)}"
        f"\n{INTERVAL_NOTE}"
    )
    fig, axes = new_figure(options, len(results), title)
    groups = results[0].groups
    colours = series_colours(len(groups))
    for ax, result in zip(axes, results, strict=True):
        for group, colour in zip(result.groups, colours, strict=True):
            text = group_label(group.values, group.n)
            plot_band(
                ax,
                group.epochs,
                group.mean,
                group.ci_low,
                group.ci_high,
                text,
                colour,
                PERCENT_BOUNDS,
            )
        empty = not any(g.epochs for g in result.groups)
        finish_panel(ax, f"tolerance {result.tolerance:g}", PERCENT_CONSTANT, empty)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_sweep_metrics(
    data: SweepMetricsOut, options: FigureOptions, metric: MetricName, label: str
) -> bytes:
    """Train and test panels of loss (or accuracy in %), one line per group with its interval."""
    title = f"{label}\n{metric} per epoch, mean over seeds\n{INTERVAL_NOTE}"
    fig, axes = new_figure(options, 2, title)
    scale = 100.0 if metric == "accuracy" else 1.0
    bounds = PERCENT_BOUNDS if metric == "accuracy" else LOSS_BOUNDS
    ylabel = "accuracy (%)" if metric == "accuracy" else "cross-entropy loss"
    colours = series_colours(len(data.groups))
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for group, colour in zip(data.groups, colours, strict=True):
            s = getattr(group, f"{split}_{metric}")

            def scaled(values: Sequence[float] | None) -> list[float] | None:
                return None if values is None else [scale * v for v in values]

            plot_band(
                ax,
                group.epochs,
                scaled(s.mean) or [],
                scaled(s.ci_low),
                scaled(s.ci_high),
                group_label(group.values, group.n),
                colour,
                bounds,
            )
        empty = not any(g.epochs for g in data.groups)
        finish_panel(ax, split, ylabel, empty, y=metric_scale(metric))
    add_legend(fig, axes[0])
    return to_png(fig)


def _symlog_threshold(xs: Sequence[float]) -> float:
    """The smallest positive x: 0 then sits one decade to its left."""
    positive = [abs(x) for x in xs if x]
    return min(positive) if positive else 1.0


def draw_sweep_summary(data: SweepSummaryOut, options: FigureOptions, label: str) -> bytes:
    """Dose-response: each group's mean with its interval as an error bar, the numeric field on
    a symlog x axis (0 beside 1e-4..1e-2), one line per layer or scope (and per value of any
    other grouping field), one panel per tolerance."""
    x_field = data.x
    by = _field_text(x_field) if x_field else "group"
    title = (
        f"{label}\n{PERCENT_CONSTANT} at epoch {data.epoch} by {by}"
        "\nbars: 95% interval of the mean over seeds (Student's t), cut to 0–100%"
    )
    fig, axes = new_figure(options, len(data.results), title)
    for ax, result in zip(axes, data.results, strict=True):
        layer_lines = [ln for ln in result.lines if ln.scope.isdigit()]
        layer_cols = iter(layer_colours(len(layer_lines)))
        mean_cols = iter(series_colours(len(result.lines)))
        all_x: list[float] = []
        for line in result.lines:
            colour = next(layer_cols) if line.scope.isdigit() else next(mean_cols)
            # Split by the grouping fields other than x: one line each.
            series: dict[str, list[tuple[float, object]]] = {}
            for i, point in enumerate(line.points):
                rest = {k: v for k, v in point.values.items() if k != x_field}
                key = ", ".join(f"{_field_text(k)} {_value_text(v)}" for k, v in rest.items())
                x = float(point.values[x_field]) if x_field else float(i)  # type: ignore[arg-type]
                series.setdefault(key, []).append((x, point))
            styles = ["-", "--", ":", "-."]
            for n, (key, points) in enumerate(series.items()):
                points.sort(key=lambda p: p[0])
                xs = [p[0] for p in points]
                all_x += xs
                means = [p[1].mean for p in points]  # type: ignore[attr-defined]
                lows = [p[1].ci_low for p in points]  # type: ignore[attr-defined]
                highs = [p[1].ci_high for p in points]  # type: ignore[attr-defined]
                yerr = None
                if all(v is not None for v in lows + highs):
                    yerr = [
                        [m - max(lo, 0.0) for m, lo in zip(means, lows, strict=True)],
                        [min(hi, 100.0) - m for m, hi in zip(means, highs, strict=True)],
                    ]
                text = scopes.describe(line.scope) + (f", {key}" if key else "")
                ax.errorbar(
                    xs,
                    means,
                    yerr=yerr,
                    label=text,
                    color=colour,
                    linestyle=styles[n % len(styles)],
                    marker="o",
                    markersize=4,
                    capsize=3,
                    linewidth=1.6,
                )
        if x_field:
            ax.set_xscale("symlog", linthresh=_symlog_threshold(all_x), linscale=0.6)
            ax.set_xlabel(_field_text(x_field))
        else:
            groups = result.lines[0].points if result.lines else []
            ax.set_xticks(range(len(groups)), [group_label(g.values, g.n) for g in groups])
        ax.set_title(f"tolerance {result.tolerance:g}")
        ax.set_ylabel(PERCENT_CONSTANT)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    add_legend(fig, axes[0])
    return to_png(fig)


def draw_sweep_difference(data: SweepDifferenceOut, options: FigureOptions, label: str) -> bytes:
    """Group b minus group a per epoch with its interval, and the zero line."""
    a = group_label(data.a.values, data.a.n)
    b = group_label(data.b.values, data.b.n)
    method = "Welch" if data.method == "welch" else "paired by seed"
    title = (
        f"{label}: [{b}] − [{a}]\n{PERCENT_CONSTANT}, {scopes.describe(data.scope)}, "
        f"tolerance {data.tolerance:g}; 95% interval ({method})"
    )
    fig, axes = new_figure(options, 1, title)
    ax = axes[0]
    ax.axhline(0, color="black", linewidth=0.8)
    plot_band(
        ax,
        data.epochs,
        data.difference,
        data.ci_low,
        data.ci_high,
        "difference",
        layer_colours(1)[0],
        DIFFERENCE_BOUNDS,
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("difference (percentage points)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if not data.epochs:
        ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)
    return to_png(fig)
