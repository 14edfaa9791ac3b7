"""Drawing: every figure decodes to a PNG of the requested size, with the colours it promises."""

from typing import Annotated

import numpy as np
import pytest
from conftest import assert_drawn, has_colour
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.core.schemas import GroupMetrics, SeriesStats, SweepMetricsOut
from server.views.figures import draw
from server.views.figures.draw import (
    FigureOptions,
    draw_compare,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    finish_panel,
    layer_colours,
    new_figure,
    run_label,
    series_colours,
)
from server.views.figures.samples import (
    sample_compare,
    sample_constancy,
    sample_metrics,
    sample_run,
    sample_weights,
)

SMALL = FigureOptions(width=480, height=360, dpi=60)
LABEL = run_label(1, "baseline", 0.0)


@pytest.mark.parametrize(
    "options",
    [
        FigureOptions(),
        FigureOptions(width=640, height=480, dpi=72),
        FigureOptions(width=1234, height=567, dpi=150),
    ],
)
def test_png_has_the_requested_size(options):
    assert_drawn(draw_metrics(sample_metrics(epochs=8), options, "loss", LABEL), options)


def test_per_layer_constancy_colours_every_layer_light_to_dark():
    rgb = assert_drawn(draw_constancy(sample_constancy(epochs=12), SMALL, "layers", LABEL), SMALL)
    colours = layer_colours(4)
    assert all(has_colour(rgb, c) for c in colours)
    # Light to dark: each layer's colour is darker than the one before.
    brightness = [sum(c[:3]) for c in colours]
    assert brightness == sorted(brightness, reverse=True)


@pytest.mark.parametrize("scope", ["all", "last2"])
def test_mean_scopes_draw_one_line_not_the_layers(scope):
    data = sample_constancy(epochs=12)
    rgb = assert_drawn(draw_constancy(data, SMALL, scope, LABEL), SMALL)
    assert not has_colour(rgb, layer_colours(4)[0])
    one_panel = draw_constancy(data.results[2], SMALL, scope, LABEL)
    assert_drawn(one_panel, SMALL)
    assert one_panel != draw_constancy(data.results[1], SMALL, scope, LABEL)


@pytest.mark.parametrize("scope", ["all", "last2", "1"])
def test_compare_tells_runs_apart(scope):
    runs = [sample_run(1, "base", 0.0, epochs_done=10), sample_run(2, None, 0.001, epochs_done=10)]
    data = sample_compare(runs, scope)
    rgb = assert_drawn(draw_compare(data, SMALL), SMALL)
    assert all(has_colour(rgb, c) for c in series_colours(2))
    assert_drawn(draw_compare(data.results[0], SMALL), SMALL)


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_metrics_draw_train_and_test(metric):
    rgb = assert_drawn(draw_metrics(sample_metrics(epochs=10), SMALL, metric, LABEL), SMALL)
    assert all(has_colour(rgb, c) for c in series_colours(2))


def test_weight_variance_draws_every_layer():
    rgb = assert_drawn(draw_weight_stats(sample_weights(epochs=10), SMALL, LABEL), SMALL)
    assert all(has_colour(rgb, c) for c in layer_colours(4))


def test_a_run_without_epochs_still_draws():
    png = draw_constancy(sample_constancy(epochs=0), SMALL, "layers", LABEL)
    # Axes, titles and a message, but no lines.
    rgb = assert_drawn(png, SMALL, ink=0.005)
    assert not has_colour(rgb, layer_colours(4)[0])


def test_non_finite_losses_leave_gaps():
    data = sample_metrics(epochs=6)
    data.train_loss[2] = float("inf")
    data.test_loss[3] = float("nan")
    assert_drawn(draw_metrics(data, SMALL, "loss", LABEL), SMALL)


@pytest.mark.parametrize("panels,shape", [(1, (1, 1)), (4, (2, 2)), (5, (2, 3)), (9, (3, 3))])
def test_one_panel_per_tolerance_in_a_near_square_grid(panels, shape):
    fig, axes = new_figure(SMALL, panels, "t")
    assert len(axes) == panels
    assert axes[0].get_gridspec().get_geometry() == shape
    assert sum(ax.get_visible() for ax in fig.axes) == panels


def test_y_axis_starts_just_below_zero():
    _, axes = new_figure(SMALL, 1, "t")
    axes[0].plot([1, 2, 3], [50, 55, 60])
    finish_panel(axes[0], "tolerance 0.1", "% of weights constant", empty=False)
    low, high = axes[0].get_ylim()
    # A series at 0% lies above the x axis, not on it; and nothing touches the top frame.
    assert -0.1 * high < low < 0
    assert high > 60
    assert axes[0].get_xlabel() == "epoch"


def test_run_label_names_run_and_weight_decay():
    assert run_label(3, "reg", 0.001) == "run 3 “reg” (weight decay 0.001)"
    assert run_label(4, None, 0.0) == "run 4 (weight decay 0)"


@pytest.mark.parametrize(
    "field,value", [("width", 199), ("width", 4001), ("height", 10), ("dpi", 49), ("dpi", 301)]
)
def test_figure_options_bounds(field, value):
    with pytest.raises(ValidationError) as exc:
        FigureOptions(**{field: value})
    assert exc.value.errors()[0]["loc"] == (field,)


def test_figure_options_as_query_dependency():
    app = FastAPI()

    @app.get("/figure")
    def figure(options: Annotated[FigureOptions, Query()], tol: float | None = None) -> dict:
        return {**options.model_dump(), "tol": tol}

    client = TestClient(app)
    assert client.get("/figure", params={"width": 800, "tol": 0.1}).json() == {
        "width": 800,
        "height": 750,
        "dpi": 100,
        "tol": 0.1,
    }
    bad = client.get("/figure", params={"dpi": 1000})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "dpi"]


def drawn_axes(monkeypatch: pytest.MonkeyPatch, draw_figure, *args) -> list:
    """The panels a draw function made (its figure, caught before it became a PNG)."""
    figures = []
    monkeypatch.setattr(draw, "to_png", lambda fig: figures.append(fig) or b"")
    draw_figure(*args)
    (fig,) = figures
    return [ax for ax in fig.axes if ax.get_visible()]


def two_run_group(mean: list[float], half_width: float) -> SeriesStats:
    return SeriesStats(
        mean=mean, ci_low=[m - half_width for m in mean], ci_high=[m + half_width for m in mean]
    )


def test_a_sweeps_wide_interval_is_cut_to_the_possible_values_and_stays_in_its_axes(
    monkeypatch,
):
    """Two runs: t(1) = 12.7 makes the 95% interval of an accuracy reach far below 0% and above
    100%; the band is cut to 0..100% and the axes hold all of it. Loss axes follow the run
    page's rule (fitted to the data, not from 0)."""
    epochs = [1, 2, 3]
    group = GroupMetrics(
        values={"weight_decay": 0.0},
        run_ids=[1, 2],
        n=2,
        epochs=epochs,
        train_loss=two_run_group([2.2, 2.1, 2.0], 0.05),
        test_loss=two_run_group([2.25, 2.2, 2.15], 0.05),
        train_accuracy=two_run_group([0.3, 0.4, 0.5], 2.0),
        test_accuracy=two_run_group([0.3, 0.35, 0.4], 2.0),
    )
    data = SweepMetricsOut(sweep_id=1, by=["weight_decay"], groups=[group])
    for ax in drawn_axes(monkeypatch, draw.draw_sweep_metrics, data, SMALL, "accuracy", "s"):
        (band,) = [c for c in ax.collections if c.get_gid() == draw.BAND]
        ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
        assert ys.min() >= 0 and ys.max() <= 100
        low, high = ax.get_ylim()
        assert low <= ys.min() and ys.max() <= high and high < 110
    sweep_loss = drawn_axes(monkeypatch, draw.draw_sweep_metrics, data, SMALL, "loss", "s")
    run_loss = drawn_axes(monkeypatch, draw.draw_metrics, sample_metrics(), SMALL, "loss", "r")
    # One rule: neither loss axis starts at 0 when the losses lie far from it.
    assert sweep_loss[0].get_ylim()[0] > 1.5
    assert run_loss[0].get_ylim()[0] > 0
