"""The look every figure shares: canvas, panel grid, colours, axes, legend and PNG encoding.

Only matplotlib's object-oriented API with the Agg canvas: no pyplot, so no global figure
state, and figures can be drawn in worker threads."""

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from server.figures.options import FigureOptions

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
