"""The report page: one self-contained HTML document with the run's figures inline."""

import base64
import io
import re

from PIL import Image

from server.core.schemas import RunStatus
from server.views.figures.draw import FigureOptions, draw_constancy, label_of
from server.views.figures.report import report_html
from server.views.figures.samples import (
    sample_constancy,
    sample_metrics,
    sample_run,
    sample_weights,
)

SMALL = FigureOptions(width=400, height=300, dpi=50)
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def report(renderer, run, epochs):
    return report_html(
        renderer,
        run,
        sample_metrics(run.id, epochs),
        sample_constancy(run.id, epochs),
        sample_weights(run.id, epochs),
        SMALL,
    )


def test_report_inlines_every_figure_and_the_spec(renderer):
    run = sample_run(7, "seed pair", 0.001, epochs_done=5)
    html = report(renderer, run, 5)
    images = DATA_URI.findall(html)
    # Loss, accuracy, constancy per layer / all layers / last two, weight variance.
    assert len(images) == 6 and len(set(images)) == 6
    for encoded in images:
        assert Image.open(io.BytesIO(base64.b64decode(encoded))).size == (400, 300)
    assert "run 7 “seed pair” (weight decay 0.001)" in html
    assert "<th>weight_decay</th><td>0.001</td>" in html
    assert "<th>tolerances</th><td>0, 0.001, 0.01, 0.1</td>" in html
    assert 'class="status succeeded"' in html
    assert "http-equiv" not in html
    # Nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:)', html)


def test_report_escapes_user_text(renderer):
    run = sample_run(1, '<script>alert("x")</script>', epochs_done=2).model_copy(
        update={"status": RunStatus.failed, "error": "RuntimeError: <b>oom</b>"}
    )
    html = report(renderer, run, 2)
    assert "<script>" not in html and "<b>oom</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "RuntimeError: &lt;b&gt;oom&lt;/b&gt;" in html


def test_report_of_a_running_run_reloads_and_one_without_epochs_has_no_figures(renderer):
    html = report(renderer, sample_run(status=RunStatus.running, epochs_done=3), 3)
    assert 'http-equiv="refresh"' in html and "3 of 50 epochs" in html
    assert len(DATA_URI.findall(html)) == 6
    empty = report(renderer, sample_run(2, status=RunStatus.queued, epochs_done=0), 0)
    assert DATA_URI.findall(empty) == [] and "No epoch has finished yet" in empty


def test_report_and_png_views_share_the_cache(renderer):
    run = sample_run(epochs_done=4)
    report(renderer, run, 4)
    assert renderer.renders == 6
    png = renderer.render(draw_constancy, sample_constancy(epochs=4), SMALL, "last2", label_of(run))
    assert renderer.renders == 6 and renderer.hits == 1
    assert base64.b64encode(png).decode() in report(renderer, run, 4)
