"""Live progress of runs for ``GET /runs/{id}/events``: one poller shared by every listener.

However many clients watch, the database sees one query per interval for the progress (status,
epochs done) of every watched run, plus one read of the new epochs of a run that advanced. The
poller keeps each watched run's epochs so far, so a new listener gets them without a query,
then every later event as the poller fans it out. A run's poll stops once it has ended; the
poller stops when nobody listens. A listener that reconnects with the last epoch it saw
(the stream's ``Last-Event-ID``) gets only later epochs. When the server shuts down, ``stop``
ends every stream at once (clients reconnect to the next server)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import select

from server.core.schemas import RunSpec
from server.store.db import Database
from server.store.lifecycle import FINISHED
from server.store.models import Run
from server.views import analysis

log = logging.getLogger(__name__)

# A watched run that disappears (deleted while queued) ends its streams with this status.
DELETED = "deleted"
ENDED = FINISHED | {DELETED}

EventKind = Literal["status", "epoch", "end"]


class StatusEvent(BaseModel):
    """``status`` (on every change) and ``end`` (the last event of a stream)."""

    run_id: int
    status: str
    epochs_done: int
    epochs: int
    error: str | None


class EpochEvent(BaseModel):
    """A stored epoch: losses, accuracies (fractions) and the smallest tolerance's means."""

    run_id: int
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    epoch_seconds: float
    tolerance: float
    constant_mean: float
    constant_last_two_mean: float


@dataclass(frozen=True)
class Event:
    kind: EventKind
    data: StatusEvent | EpochEvent


@dataclass(frozen=True)
class Progress:
    status: str
    epochs_done: int
    epochs: int
    error: str | None


@dataclass
class Watch:
    """A watched run: what the poller last saw, its epochs so far and its listeners."""

    progress: Progress | None = None
    epochs: list[Event] = field(default_factory=list)
    listeners: set[asyncio.Queue[Event | None]] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        return self.progress is not None and self.progress.status in ENDED


def state_event(run_id: int, progress: Progress) -> Event:
    """``end`` once the run has ended, else ``status``."""
    data = StatusEvent(
        run_id=run_id,
        status=progress.status,
        epochs_done=progress.epochs_done,
        epochs=progress.epochs,
        error=progress.error,
    )
    return Event("end" if progress.status in ENDED else "status", data)


def read_progress(database: Database, run_ids: Sequence[int]) -> dict[int, Progress]:
    """The progress of every run in ``run_ids`` that exists, in one query."""
    with database.reader() as session:
        rows = session.execute(
            select(Run.id, Run.status, Run.epochs_done, Run.error, Run.spec).where(
                Run.id.in_(run_ids)
            )
        ).all()
    return {
        row.id: Progress(
            row.status, row.epochs_done, RunSpec.model_validate(row.spec).epochs, row.error
        )
        for row in rows
    }


def read_epochs(
    database: Database, wanted: dict[int, tuple[int, int]]
) -> dict[int, list[EpochEvent]]:
    """Each run's stored epochs ``last < epoch <= upto`` for ``wanted[run_id] = (last, upto)``,
    in one read transaction (later epochs wait for the poll that sees them in the progress)."""
    found: dict[int, list[EpochEvent]] = {}
    with database.reader() as session:
        for run_id, (last, upto) in wanted.items():
            run = session.get(Run, run_id)
            if run is None:
                continue
            metrics = analysis.metrics(session, run)
            constancy = analysis.constancy(
                session, run, RunSpec.model_validate(run.spec).tolerances[0]
            )
            # Both are stored per epoch in one transaction: the same epochs, in order.
            found[run_id] = [
                EpochEvent(
                    run_id=run_id,
                    epoch=epoch,
                    train_loss=metrics.train_loss[i],
                    train_accuracy=metrics.train_accuracy[i],
                    test_loss=metrics.test_loss[i],
                    test_accuracy=metrics.test_accuracy[i],
                    epoch_seconds=metrics.epoch_seconds[i],
                    tolerance=constancy.tolerance,
                    constant_mean=constancy.mean[i],
                    constant_last_two_mean=constancy.last_two_mean[i],
                )
                for i, epoch in enumerate(metrics.epochs)
                if last < epoch <= upto
            ]
    return found


class Broadcaster:
    """Polls the watched runs every ``interval`` seconds and fans their events out."""

    def __init__(self, database: Database, interval: float) -> None:
        self.database = database
        self.interval = interval
        self.polls = 0  # queries of progress made, for tests
        self._watches: dict[int, Watch] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """End every stream, now and later ones at once: the server is shutting down and would
        otherwise wait for them. Safe from a signal handler (it runs in ``loop``)."""
        loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        self._stopped = True
        for watch in self._watches.values():
            self._publish(watch, None)

    async def listen(self, run_id: int, after: int = 0) -> AsyncIterator[Event]:
        """The run's events: its epochs after epoch ``after`` so far, its status, then each
        change; ends after ``end``, or without it when the server stops."""
        if self._stopped:
            return
        watch = self._watches.setdefault(run_id, Watch())
        # None: the server is stopping.
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        # What the poller has seen so far, then live: both in this loop turn, so no event falls
        # in between. A new watch has seen nothing yet; its first poll sends everything.
        for event in watch.epochs:
            queue.put_nowait(event)
        if watch.progress is not None:
            queue.put_nowait(state_event(run_id, watch.progress))
        watch.listeners.add(queue)
        self._ensure_polling()
        last_epoch = after
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                if isinstance(event.data, EpochEvent):
                    # A run restarted from epoch 0 (checkpoint lost) stores epochs sent before.
                    if event.data.epoch <= last_epoch:
                        continue
                    last_epoch = event.data.epoch
                yield event
                if event.kind == "end":
                    return
        finally:
            watch.listeners.discard(queue)
            if not watch.listeners and self._watches.get(run_id) is watch:
                del self._watches[run_id]

    def _ensure_polling(self) -> None:
        if self._task is None or self._task.done():
            # Made here, in the serving event loop (an Event belongs to the loop it is used in).
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._poll_loop(self._wake), name="decaylab-events")
        self._wake.set()  # a new listener of a new run need not wait for the next interval

    async def _poll_loop(self, wake: asyncio.Event) -> None:
        while self._watches:
            wake.clear()
            try:
                await self.poll()
            except Exception:
                # A database outage must not end every stream: the next round tries again.
                log.exception("polling the progress of watched runs failed")
            try:
                await asyncio.wait_for(wake.wait(), self.interval)
            except TimeoutError:
                pass

    async def poll(self) -> None:
        """One round: the progress of every watched run still going, then its new epochs."""
        ids = [run_id for run_id, watch in self._watches.items() if not watch.ended]
        if not ids:
            return
        self.polls += 1
        progress = await run_in_threadpool(read_progress, self.database, ids)
        wanted: dict[int, tuple[int, int]] = {}
        for run_id, now in progress.items():
            seen = self._watches[run_id].progress if run_id in self._watches else None
            last = seen.epochs_done if seen else 0
            if now.epochs_done > last:
                wanted[run_id] = (last, now.epochs_done)
        epochs = await run_in_threadpool(read_epochs, self.database, wanted) if wanted else {}
        for run_id in ids:
            # Listeners may have left during the reads.
            if (watch := self._watches.get(run_id)) is not None:
                self._update(run_id, watch, progress.get(run_id), epochs.get(run_id, []))

    def _update(
        self, run_id: int, watch: Watch, now: Progress | None, epochs: list[EpochEvent]
    ) -> None:
        for epoch in epochs:
            event = Event("epoch", epoch)
            watch.epochs.append(event)
            self._publish(watch, event)
        seen = watch.progress
        if now is None:
            now = Progress(DELETED, seen.epochs_done, seen.epochs, None) if seen else None
            now = now or Progress(DELETED, 0, 0, None)
        elif seen is not None and now.epochs_done < seen.epochs_done:
            # Restarted from an earlier epoch: forget the epochs it will store again.
            watch.epochs = [e for e in watch.epochs if e.data.epoch <= now.epochs_done]
        watch.progress = now
        if seen is None or (now.status, now.error) != (seen.status, seen.error):
            self._publish(watch, state_event(run_id, now))

    @staticmethod
    def _publish(watch: Watch, event: Event | None) -> None:
        for queue in watch.listeners:
            queue.put_nowait(event)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
