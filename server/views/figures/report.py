"""One self-contained HTML page per run: status, spec, last epoch and every figure inline."""

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from jinja2 import Environment, PackageLoader, Template, select_autoescape

from server.core.schemas import ConstancyAllOut, MetricsOut, RunOut, RunStatus, WeightStatsOut
from server.views.figures.draw import (
    FigureOptions,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    label_of,
)
from server.views.figures.render import Renderer

# A page of a run that is still going reloads itself to show the new epochs.
REFRESH_SECONDS = 15


@dataclass(frozen=True)
class ReportFigure:
    caption: str
    png: bytes

    @property
    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class ReportSection:
    title: str
    figures: list[ReportFigure]


@dataclass(frozen=True)
class LastEpoch:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float


@lru_cache
def _template() -> Template:
    # Autoescaping: run names, notes and errors are user text.
    env = Environment(
        loader=PackageLoader("server.api", "templates"),
        autoescape=select_autoescape(),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    return env.get_template("report.html")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _spec_value(value: object) -> str:
    """A spec value as the user wrote it in JSON: true/false, numbers, lists comma-separated."""
    if isinstance(value, list):
        return ", ".join(_spec_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def render_report(run: RunOut, metrics: MetricsOut, sections: list[ReportSection]) -> str:
    """The page's HTML from figures already drawn."""
    last = None
    if metrics.epochs:
        last = LastEpoch(
            epoch=metrics.epochs[-1],
            train_loss=metrics.train_loss[-1],
            train_accuracy=metrics.train_accuracy[-1],
            test_loss=metrics.test_loss[-1],
            test_accuracy=metrics.test_accuracy[-1],
        )
    spec = [(field, _spec_value(value)) for field, value in run.spec.model_dump().items()]
    return _template().render(
        run=run,
        label=label_of(run),
        live=run.status in (RunStatus.queued, RunStatus.running),
        refresh_seconds=REFRESH_SECONDS,
        last=last,
        training_seconds=sum(metrics.epoch_seconds),
        sections=sections,
        spec=spec,
    )


def report_html(
    renderer: Renderer,
    run: RunOut,
    metrics: MetricsOut,
    constancy: ConstancyAllOut,
    weights: WeightStatsOut,
    options: FigureOptions,
) -> str:
    """The whole report of ``run``; its figures come from (and go into) the render cache."""
    if not metrics.epochs:
        return render_report(run, metrics, [])
    label = label_of(run)
    # All six are queued at once, so the pool draws them side by side.
    futures = [
        renderer.submit(draw_metrics, metrics, options, "loss", label),
        renderer.submit(draw_metrics, metrics, options, "accuracy", label),
        renderer.submit(draw_constancy, constancy, options, "layers", label),
        renderer.submit(draw_constancy, constancy, options, "all", label),
        renderer.submit(draw_constancy, constancy, options, "last2", label),
        renderer.submit(draw_weight_stats, weights, options, label),
    ]
    loss, accuracy, per_layer, mean_all, mean_last2, variance = (f.result() for f in futures)
    constant = "% of weights constant between epochs, one panel per tolerance"
    sections = [
        ReportSection(
            "Training",
            [
                ReportFigure("Train vs test loss per epoch", loss),
                ReportFigure("Train vs test accuracy per epoch", accuracy),
            ],
        ),
        ReportSection(
            "Weights that stayed constant",
            [
                ReportFigure(f"{constant}: per layer, light to dark from layer 0", per_layer),
                ReportFigure(f"{constant}: mean of all layers", mean_all),
                ReportFigure(f"{constant}: mean of the last two layers", mean_last2),
            ],
        ),
        ReportSection(
            "Weight variance",
            [ReportFigure("Variance of each layer's weights per epoch (0: initial)", variance)],
        ),
    ]
    return render_report(run, metrics, sections)
