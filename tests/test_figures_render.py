"""The render cache: each distinct figure drawn once, in the pool, single-flight, bounded."""

import threading

import pytest
from pydantic import BaseModel

from server.views.figures.draw import FigureOptions, draw_compare, draw_constancy
from server.views.figures.render import Renderer, figure_key
from server.views.figures.samples import sample_compare, sample_constancy, sample_run

SMALL = FigureOptions(width=400, height=300, dpi=50)


class Text(BaseModel):
    text: str


class CountingDraw:
    """A draw function that records how often, and on which thread, it ran."""

    def __init__(self, size: int = 10) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.size = size

    def __call__(self, data: Text, _options: FigureOptions) -> bytes:
        self.calls += 1
        self.threads.add(threading.get_ident())
        return (data.text * self.size)[: self.size].encode()


def test_second_request_is_served_from_cache_drawn_off_the_calling_thread(renderer):
    draw = CountingDraw()
    first = renderer.render(draw, Text(text="a"), SMALL)
    second = renderer.render(draw, Text(text="a"), SMALL)
    assert first == second == b"a" * 10
    assert draw.calls == 1 and renderer.renders == 1 and renderer.hits == 1
    assert draw.threads and threading.get_ident() not in draw.threads


def test_concurrent_requests_share_one_drawing(renderer):
    release = threading.Event()
    draw = CountingDraw()

    def slow(data: Text, options: FigureOptions) -> bytes:
        release.wait(5)
        return draw(data, options)

    futures = [renderer.submit(slow, Text(text="a"), SMALL) for _ in range(3)]
    release.set()
    assert [f.result() for f in futures] == [b"a" * 10] * 3
    assert draw.calls == 1


def test_failed_drawing_is_not_cached(renderer):
    def broken(data: Text, _options: FigureOptions) -> bytes:
        raise ValueError(data.text)

    with pytest.raises(ValueError, match="boom"):
        renderer.render(broken, Text(text="boom"), SMALL)
    draw = CountingDraw()
    assert renderer.render(draw, Text(text="b"), SMALL) == b"b" * 10
    with pytest.raises(ValueError, match="boom"):
        renderer.render(broken, Text(text="boom"), SMALL)


def test_cache_evicts_least_recently_used_beyond_its_byte_budget():
    renderer = Renderer(max_bytes=25)
    draw = CountingDraw(size=10)
    for text in ("a", "b", "a", "c", "a", "b"):
        renderer.render(draw, Text(text=text), SMALL)
    renderer.close()
    # a, b drawn; a hit; c evicts b (least recently used); a hit; b drawn again.
    assert draw.calls == 4 and renderer.hits == 2 and renderer.cached_bytes <= 25


def test_key_is_the_figures_content():
    three, four = sample_constancy(epochs=3), sample_constancy(epochs=4)
    key = figure_key(draw_constancy, three, SMALL, "layers", "run 1")
    assert key == figure_key(draw_constancy, sample_constancy(epochs=3), SMALL, "layers", "run 1")
    others = {
        figure_key(draw_constancy, four, SMALL, "layers", "run 1"),  # a new epoch
        figure_key(draw_constancy, three, SMALL, "all", "run 1"),  # another scope
        figure_key(draw_constancy, three, FigureOptions(), "layers", "run 1"),  # another size
        figure_key(draw_constancy, three, SMALL, "layers", "run 2"),  # another label
        figure_key(draw_compare, three, SMALL, "layers", "run 1"),  # another figure
    }
    assert key not in others and len(others) == 5


def test_a_running_runs_figure_is_drawn_again_only_once_it_has_a_new_epoch(renderer):
    label = "run 1"
    first = renderer.render(draw_constancy, sample_constancy(epochs=3), SMALL, "layers", label)
    second = renderer.render(draw_constancy, sample_constancy(epochs=3), SMALL, "layers", label)
    third = renderer.render(draw_constancy, sample_constancy(epochs=4), SMALL, "layers", label)
    assert first == second != third
    assert renderer.renders == 2 and renderer.hits == 1


def test_compare_figure_follows_run_order(renderer):
    runs = [sample_run(1, epochs_done=4), sample_run(2, "wd", 0.001, epochs_done=4)]
    renderer.render(draw_compare, sample_compare(runs), SMALL)
    renderer.render(draw_compare, sample_compare(runs[::-1]), SMALL)
    renderer.render(draw_compare, sample_compare(runs), SMALL)
    assert renderer.renders == 2 and renderer.hits == 1


def test_parallel_drawing_threads_draw_what_one_thread_draws():
    """matplotlib state shared between threads (fonts, caches) must not leak into figures."""
    runs = [sample_run(i, f"run{i}", 0.001 * i, epochs_done=5 + i) for i in range(4)]

    def draw_all(renderer: Renderer) -> list[bytes]:
        futures = [
            renderer.submit(
                draw_constancy, sample_constancy(r.id, r.epochs_done), SMALL, "layers", r.name
            )
            for r in runs
        ]
        pngs = [f.result() for f in futures]
        renderer.close()
        return pngs

    assert draw_all(Renderer(workers=4)) == draw_all(Renderer(workers=1))
