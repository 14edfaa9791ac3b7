"""Render figures off the event loop, once per request and run progress.

A PNG is drawn in a small thread pool (matplotlib is CPU-bound and would block the event loop)
and kept in a bounded LRU cache. The key names the request and every run's progress, so a
finished run's figure is drawn once while a running run's figure is redrawn after each epoch.
Concurrent requests for the same key share one drawing."""

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

DEFAULT_MAX_BYTES = 64 * 2**20


class RunProgress(Protocol):
    """What of a run decides whether its figures are still current (RunOut or the table row)."""

    @property
    def id(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def attempts(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def epochs_done(self) -> int: ...


def figure_key(kind: str, runs: Sequence[RunProgress], **params: Hashable) -> Hashable:
    """The cache key of a figure of ``runs`` (in their order) with the request's ``params``.

    created_at tells a run from a deleted one whose id SQLite reused; attempts changes when a
    run was taken over (and maybe restarted from epoch 0). Read the runs before (or in the same
    transaction as) the data drawn, so that a key never promises more epochs than were drawn."""
    progress = tuple((r.id, r.created_at, r.attempts, str(r.status), r.epochs_done) for r in runs)
    return (kind, progress, tuple(sorted(params.items())))


class Renderer:
    """A thread pool that draws PNGs, with an LRU cache of at most ``max_bytes`` of them."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, workers: int = 2) -> None:
        self.max_bytes = max_bytes
        # Counters for tests and the benchmark: drawings started, requests answered from cache.
        self.renders = 0
        self.hits = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="figures")
        # Guards the maps below: done-callbacks run in pool threads.
        self._lock = threading.Lock()
        self._cache: OrderedDict[Hashable, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._pending: dict[Hashable, Future[bytes]] = {}

    async def render_png(
        self, key: Hashable, draw: Callable[..., bytes], *args: Any, **kwargs: Any
    ) -> bytes:
        """The cached PNG for ``key``, or ``draw(*args, **kwargs)`` run in the pool and cached."""
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return cached
            future = self._pending.get(key)
            started = future is None
            if future is None:
                future = self._pool.submit(draw, *args, **kwargs)
                self._pending[key] = future
                self.renders += 1
        if started:
            # Outside the lock: a future that is already done runs the callback right here.
            future.add_done_callback(partial(self._store, key))
        # Shielded: a client that hangs up must not cancel a drawing others may be waiting for.
        return await asyncio.shield(asyncio.wrap_future(future))

    def _store(self, key: Hashable, future: Future[bytes]) -> None:
        with self._lock:
            self._pending.pop(key, None)
            if future.cancelled() or future.exception() is not None:
                return
            png = future.result()
            if len(png) > self.max_bytes:
                return
            self._cache[key] = png
            self._cached_bytes += len(png)
            while self._cached_bytes > self.max_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= len(evicted)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def get_renderer(request: Request) -> Renderer:
    """The app's renderer: made by create_app, closed when the app shuts down."""
    return request.app.state.renderer


RendererDep = Annotated[Renderer, Depends(get_renderer)]
