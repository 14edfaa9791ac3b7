"""Rendering figures: in a small thread pool, once per distinct figure, kept in an LRU cache.

matplotlib is CPU-bound, so at most ``workers`` figures are drawn at a time. A figure is a pure
function of what it draws, so its cache key is its content: the drawing function, a digest of
the response model's JSON, its hashable arguments and the options. A finished run's figure is
then drawn once, and a running run's again only once it has new numbers. Concurrent requests
for the same figure share one drawing (single flight); the cache itself is cachetools' LRU,
bounded by the bytes it holds.
"""

import hashlib
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Concatenate

from cachetools import LRUCache
from fastapi import Depends, Request
from pydantic import BaseModel

from server.views.figures.draw import FigureOptions

DEFAULT_MAX_BYTES = 64 * 2**20

Draw = Callable[Concatenate[BaseModel, FigureOptions, ...], bytes]


def figure_key(
    draw: Callable[..., bytes],
    data: BaseModel,
    options: FigureOptions,
    *args: Hashable,
    digest: bytes | None = None,
) -> Hashable:
    """``digest``: of the data's JSON, when the caller has it (the view cache does)."""
    if digest is None:
        digest = hashlib.blake2b(data.model_dump_json().encode(), digest_size=16).digest()
    return (draw, type(data).__name__, digest, options, args)


class Renderer:
    """A thread pool that draws PNGs, with an LRU cache of at most ``max_bytes`` of them."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, workers: int = 2) -> None:
        # Counters for tests and the benchmark: drawings started, requests answered from cache.
        self.renders = 0
        self.hits = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="figures")
        # Guards the cache and the pending map: done-callbacks run in pool threads.
        self._lock = threading.Lock()
        self._cache: LRUCache[Hashable, bytes] = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._pending: dict[Hashable, Future[bytes]] = {}

    def submit(
        self,
        draw: Draw,
        data: BaseModel,
        options: FigureOptions,
        *args: Hashable,
        digest: bytes | None = None,
    ) -> Future[bytes]:
        """The PNG of ``draw(data, options, *args)``: cached, being drawn, or drawn now."""
        key = figure_key(draw, data, options, *args, digest=digest)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self.hits += 1
                done: Future[bytes] = Future()
                done.set_result(cached)
                return done
            future = self._pending.get(key)
            if future is not None:
                return future
            future = self._pool.submit(draw, data, options, *args)
            self._pending[key] = future
            self.renders += 1
        # Outside the lock: a future that is already done runs the callback right here.
        future.add_done_callback(lambda f: self._store(key, f))
        return future

    def render(
        self,
        draw: Draw,
        data: BaseModel,
        options: FigureOptions,
        *args: Hashable,
        digest: bytes | None = None,
    ) -> bytes:
        return self.submit(draw, data, options, *args, digest=digest).result()

    def _store(self, key: Hashable, future: Future[bytes]) -> None:
        with self._lock:
            self._pending.pop(key, None)
            if future.cancelled() or future.exception() is not None:
                return
            png = future.result()
            if len(png) <= self._cache.maxsize:
                self._cache[key] = png

    @property
    def cached_bytes(self) -> int:
        return int(self._cache.currsize)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


async def get_renderer(request: Request) -> Renderer:
    """The app's renderer: made by create_app, closed when the app shuts down."""
    return request.app.state.renderer


RendererDep = Annotated[Renderer, Depends(get_renderer)]
