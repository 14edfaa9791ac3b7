"""What the figures must show: a series at 0% above the x axis, room above the top line, the
last epoch labelled, loss scaled to its data, variance on a log axis, layers named with their
shapes in colours that can be told apart, the basis of compared runs, and readable text at every
admitted size (no matplotlib warnings)."""

import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

from server.views.figures import draw, samples
from server.views.figures.draw import FigureOptions

SIZES = [
    FigureOptions(width=w, height=h, dpi=dpi)
    for w, h in [(400, 300), (4000, 4000), (400, 4000), (4000, 300)]
    for dpi in (50, 300)
] + [FigureOptions()]


@pytest.fixture
def figures(monkeypatch) -> list[Figure]:
    """The matplotlib figures the draw functions make (instead of their PNG bytes)."""
    drawn: list[Figure] = []

    def keep(fig: Figure) -> bytes:
        drawn.append(fig)
        return b""

    monkeypatch.setattr(draw, "to_png", keep)
    return drawn


def two_runs(epochs: int = 5, bases: tuple[str, str] = ("previous", "previous")):
    runs = [
        samples.sample_run(1, "no decay", 0.0, epochs_done=epochs),
        samples.sample_run(2, "decay", 0.001, epochs_done=epochs),
    ]
    data = samples.sample_compare(runs)
    for result in data.results:
        for run, basis in zip(result.runs, bases, strict=True):
            run.basis = basis
        result.runs[1].percent = [0.0] * epochs  # the key result: nothing constant with decay
    return data


def test_a_series_at_zero_is_a_line_above_the_x_axis_and_none_touches_the_top(figures):
    draw.draw_compare(two_runs(), FigureOptions())
    for ax in figures[0].axes:
        low, high = ax.get_ylim()
        top = max(max(line.get_ydata()) for line in ax.lines)
        assert low < 0 < top < high
        # A visible gap: at least 2% of the axis below the zero line, and above the top one.
        assert -low / (high - low) >= 0.02 and (high - top) / (high - low) >= 0.02
        zero = ax.lines[1]
        assert zero.get_zorder() > ax.spines["bottom"].get_zorder()
        # Lines that may lie on each other differ in style and marker, not only colour.
        assert ax.lines[0].get_linestyle() != zero.get_linestyle()
        assert ax.lines[0].get_marker() != zero.get_marker()


def test_a_flat_zero_constancy_panel_still_has_an_axis(figures):
    data = samples.sample_constancy(2, 5, 0.001)
    for layer in data.results[0].layers:
        layer.percent = [0.0] * 5
    draw.draw_constancy(data, FigureOptions(), "layers", "run 2")
    low, high = figures[0].axes[0].get_ylim()
    assert low < 0 < high


@pytest.mark.parametrize("epochs", [1, 2, 5, 7, 13, 50, 97])
def test_the_last_epoch_is_labelled(figures, epochs):
    draw.draw_metrics(samples.sample_metrics(1, epochs), FigureOptions(), "loss", "run 1")
    draw.draw_weight_stats(samples.sample_weights(1, epochs), FigureOptions(), "run 1")
    for fig in figures:
        ticks = list(fig.axes[0].get_xticks())
        assert epochs in ticks and ticks == sorted(ticks)
        assert all(float(t).is_integer() for t in ticks)


def test_the_loss_axis_scales_to_the_loss(figures):
    metrics = samples.sample_metrics(1, 5)
    metrics.train_loss = [2.30, 2.27, 2.24, 2.20, 2.17]
    metrics.test_loss = [2.29, 2.26, 2.23, 2.21, 2.19]
    draw.draw_metrics(metrics, FigureOptions(), "loss", "run 1")
    low, high = figures[0].axes[0].get_ylim()
    assert 2.0 < low < 2.17 and 2.30 < high < 2.5


def test_weight_variance_is_on_a_log_axis_with_layer_shapes(figures):
    draw.draw_weight_stats(samples.sample_weights(1, 5), FigureOptions(), "run 1")
    fig = figures[0]
    assert fig.axes[0].get_yscale() == "log"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "layer 0 (3072→512)" and labels[-1] == "layer 3 (512→10)"


def luminance(rgb) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("count", [2, 3, 4, 6, 8])
def test_layer_colours_go_light_to_dark_and_neighbours_differ(count):
    colours = draw.layer_colours(count)
    lum = [luminance(c) for c in colours]
    assert lum == sorted(lum, reverse=True)  # light to dark
    # The lightest still stands out on white (WCAG contrast ratio of graphics: >= 2).
    assert (1.05) / (lum[0] + 0.05) >= 2.0
    for a, b in zip(colours, colours[1:], strict=False):
        distance = np.linalg.norm(np.subtract(a[:3], b[:3]))
        assert distance >= 0.12 if count <= 4 else distance >= 0.06, (a, b)


def test_compare_names_the_basis_and_warns_when_bases_differ(figures):
    draw.draw_compare(two_runs(), FigureOptions())
    draw.draw_compare(two_runs(bases=("previous", "next")), FigureOptions())
    same, mixed = figures
    assert "basis previous" in same._suptitle.get_text()
    assert "MIXED BASES" in mixed._suptitle.get_text()
    legend = [t.get_text() for t in mixed.legends[0].get_texts()]
    assert legend[0].endswith("basis previous") and legend[1].endswith("basis next")


@pytest.mark.parametrize("options", SIZES, ids=lambda o: f"{o.width}x{o.height}@{o.dpi}")
def test_every_admitted_size_draws_readable_text_without_warnings(options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pngs = [
            draw.draw_compare(two_runs(50), options),
            draw.draw_constancy(samples.sample_constancy(1, 50), options, "layers", "run 1"),
            draw.draw_metrics(samples.sample_metrics(1, 50), options, "accuracy", "run 1"),
            draw.draw_weight_stats(samples.sample_weights(1, 50), options, "run 1"),
            draw.draw_constancy(samples.sample_constancy(1, 0), options, "layers", "run 1"),
        ]
    assert all(png.startswith(b"\x89PNG") for png in pngs)
    text_pixels = options.font_points * options.dpi / 72
    assert text_pixels >= draw.MIN_TEXT_PIXELS - 1e-9
    assert text_pixels <= max(draw.MIN_TEXT_PIXELS, options.min_side / 32) + 1e-9


@pytest.mark.parametrize("field,value", [("width", 399), ("height", 299)])
def test_sizes_too_small_to_read_are_422_saying_why(client, field, value):
    response = client.get("/runs/1/constancy", params={"format": "png", field: value})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]
    schema = client.get("/openapi.json").json()
    described = [
        p["description"]
        for p in schema["paths"]["/runs/{run_id}/constancy"]["get"]["parameters"]
        if p["name"] == field
    ]
    assert "cannot be read" in described[0]
