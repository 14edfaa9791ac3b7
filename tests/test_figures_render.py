"""The render cache: drawn once per request and run progress, off the event loop, bounded."""

import asyncio
import threading

import pytest

from server.figures.options import FigureOptions
from server.figures.pngs import compare_png, constancy_png
from server.figures.samples import sample_compare, sample_constancy, sample_run
from server.render import Renderer, figure_key
from server.schemas import RunStatus

SMALL = FigureOptions(width=400, height=300, dpi=50)


class CountingDraw:
    """A draw function that records how often, and on which thread, it ran."""

    def __init__(self, size: int = 10) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.size = size

    def __call__(self, text: str) -> bytes:
        self.calls += 1
        self.threads.add(threading.get_ident())
        return (text * self.size)[: self.size].encode()


@pytest.fixture
def renderer():
    r = Renderer()
    yield r
    r.close()


def test_second_request_is_served_from_cache(renderer):
    draw = CountingDraw()

    async def twice():
        first = await renderer.render_png(("k", 1), draw, "a")
        second = await renderer.render_png(("k", 1), draw, "a")
        return first, second

    first, second = asyncio.run(twice())
    assert first == second == b"a" * 10
    assert draw.calls == 1 and renderer.renders == 1 and renderer.hits == 1


def test_drawing_runs_off_the_event_loop_thread(renderer):
    draw = CountingDraw()
    asyncio.run(renderer.render_png("k", draw, "a"))
    assert draw.threads and threading.get_ident() not in draw.threads


def test_concurrent_requests_share_one_drawing(renderer):
    release = threading.Event()
    draw = CountingDraw()

    def slow(text: str) -> bytes:
        release.wait(5)
        return draw(text)

    async def many():
        tasks = [asyncio.create_task(renderer.render_png("k", slow, "a")) for _ in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(many()) == [b"a" * 10] * 3
    assert draw.calls == 1


def test_failed_drawing_is_not_cached(renderer):
    def broken(text: str) -> bytes:
        raise ValueError(text)

    draw = CountingDraw()

    async def attempt():
        with pytest.raises(ValueError, match="boom"):
            await renderer.render_png("k", broken, "boom")
        return await renderer.render_png("k", draw, "b")

    assert asyncio.run(attempt()) == b"b" * 10
    assert draw.calls == 1


def test_cache_evicts_least_recently_used_beyond_its_byte_budget():
    renderer = Renderer(max_bytes=25)
    draw = CountingDraw(size=10)

    async def sequence():
        for key in ("a", "b", "a", "c", "a", "b"):
            await renderer.render_png(key, draw, key)

    asyncio.run(sequence())
    renderer.close()
    # a, b drawn; a hit; c evicts b (least recently used); a hit; b drawn again.
    assert draw.calls == 4 and renderer.hits == 2


def test_key_follows_a_running_run_and_stays_for_a_finished_one():
    running = sample_run(status=RunStatus.running, epochs_done=3)
    later = running.model_copy(update={"epochs_done": 4})
    assert figure_key("c", [running], tol=None) != figure_key("c", [later], tol=None)
    done = later.model_copy(update={"status": RunStatus.succeeded})
    assert figure_key("c", [later]) != figure_key("c", [done])
    assert figure_key("c", [done], tol=0.1) == figure_key("c", [done.model_copy()], tol=0.1)
    # A run taken over by another worker, or a new run reusing a deleted run's id.
    assert figure_key("c", [done]) != figure_key("c", [done.model_copy(update={"attempts": 2})])
    reused = done.model_copy(update={"created_at": done.created_at.replace(year=2022)})
    assert figure_key("c", [done]) != figure_key("c", [reused])


def test_key_separates_requests():
    run = sample_run()
    keys = {
        figure_key("constancy", [run], scope="layers", options=SMALL),
        figure_key("constancy", [run], scope="all", options=SMALL),
        figure_key("constancy", [run], scope="layers", options=FigureOptions()),
        figure_key("metrics", [run], scope="layers", options=SMALL),
    }
    assert len(keys) == 4


def test_constancy_png_draws_once_per_epoch_of_a_running_run(renderer):
    run = sample_run(status=RunStatus.running, epochs_done=3)

    async def requests():
        pngs = [
            await constancy_png(renderer, run, sample_constancy(epochs=3), "layers", SMALL),
            await constancy_png(renderer, run, sample_constancy(epochs=3), "layers", SMALL),
        ]
        run4 = run.model_copy(update={"epochs_done": 4})
        pngs.append(
            await constancy_png(renderer, run4, sample_constancy(epochs=4), "layers", SMALL)
        )
        return pngs

    first, second, third = asyncio.run(requests())
    assert first == second != third
    assert renderer.renders == 2 and renderer.hits == 1


def test_compare_png_key_follows_run_order(renderer):
    runs = [sample_run(1, epochs_done=4), sample_run(2, "wd", 0.001, epochs_done=4)]

    async def both_orders():
        await compare_png(renderer, runs, sample_compare(runs), SMALL)
        await compare_png(renderer, runs[::-1], sample_compare(runs[::-1]), SMALL)
        await compare_png(renderer, runs, sample_compare(runs), SMALL)

    asyncio.run(both_orders())
    assert renderer.renders == 2 and renderer.hits == 1


def test_parallel_drawing_threads_draw_what_one_thread_draws():
    """matplotlib state shared between threads (fonts, caches) must not leak into figures."""
    runs = [sample_run(i, f"run{i}", 0.001 * i, epochs_done=5 + i) for i in range(4)]

    async def draw_all(renderer):
        pngs = await asyncio.gather(
            *[
                constancy_png(renderer, r, sample_constancy(r.id, r.epochs_done), "layers", SMALL)
                for r in runs
            ]
        )
        renderer.close()
        return pngs

    assert asyncio.run(draw_all(Renderer(workers=4))) == asyncio.run(draw_all(Renderer(workers=1)))
