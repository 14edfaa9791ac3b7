"""Draw the API's response models as PNG bytes: constancy, comparison, metrics, weight variance.

Each function takes a response model from server.schemas (what the JSON view returns), a label
for the run where the model does not name it, and FigureOptions; it returns PNG bytes."""

from collections.abc import Sequence

from server.figures.options import ConstancyScope, FigureOptions, MetricName
from server.figures.style import (
    PERCENT_CONSTANT,
    add_legend,
    finish_panel,
    layer_colours,
    new_figure,
    plot_line,
    series_colours,
    to_png,
)
from server.schemas import (
    CompareAllOut,
    CompareOut,
    ConstancyAllOut,
    ConstancyOut,
    MetricsOut,
    WeightStatsOut,
)

CONSTANCY_SCOPES: dict[str, str] = {
    "layers": "per layer",
    "all": "mean of all layers",
    "last2": "mean of the last two layers",
}


def run_label(run_id: int, name: str | None, weight_decay: float) -> str:
    """How a run is named in titles and legends: id, name, and the weight decay it varies."""
    named = f"run {run_id} “{name}”" if name else f"run {run_id}"
    return f"{named} (weight decay {weight_decay:g})"


def draw_constancy(
    data: ConstancyOut | ConstancyAllOut,
    scope: ConstancyScope,
    label: str,
    options: FigureOptions,
) -> bytes:
    """One panel per tolerance (a 2×2 grid for the seed's four); per layer, light to dark, or the
    all-layer / last-two-layer mean."""
    results = data.results if isinstance(data, ConstancyAllOut) else [data]
    title = (
        f"{label}\n{PERCENT_CONSTANT} between epochs, {CONSTANCY_SCOPES[scope]}"
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
            plot_line(ax, result.epochs, values, CONSTANCY_SCOPES[scope], layer_colours(1)[0])
        finish_panel(ax, f"tolerance {result.tolerance:g}", PERCENT_CONSTANT, not result.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)


def compare_scope_text(scope: str) -> str:
    return f"layer {scope}" if scope.isdigit() else CONSTANCY_SCOPES[scope]


def draw_compare(data: CompareOut | CompareAllOut, options: FigureOptions) -> bytes:
    """The seed's run-vs-run comparison: one panel per tolerance, one colour per run."""
    results = data.results if isinstance(data, CompareAllOut) else [data]
    labels = [run_label(r.run_id, r.name, r.weight_decay) for r in results[0].runs]
    named = " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"
    title = f"{named}\n{PERCENT_CONSTANT} between epochs, {compare_scope_text(data.scope)}"
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


def draw_metrics(data: MetricsOut, metric: MetricName, label: str, options: FigureOptions) -> bytes:
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


def draw_weight_stats(data: WeightStatsOut, label: str, options: FigureOptions) -> bytes:
    """Each layer's weight variance per epoch (epoch 0 = initial weights), light to dark."""
    fig, axes = new_figure(options, 1, f"{label}\nvariance of each layer's weights per epoch")
    colours = layer_colours(len(data.layers))
    for layer, colour in zip(data.layers, colours, strict=True):
        plot_line(axes[0], data.epochs, layer.variance, f"layer {layer.index}", colour)
    finish_panel(axes[0], None, "weight variance", empty=not data.epochs)
    add_legend(fig, axes[0])
    return to_png(fig)
