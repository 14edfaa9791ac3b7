from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from server.api.events import Broadcaster, EpochEvent
from server.api.routers.params import RunId
from server.core.schemas import ErrorOut
from server.store import crud

router = APIRouter(tags=["runs"])


def get_broadcaster(request: Request) -> Broadcaster:
    return request.app.state.events


async def existing_run(run_id: RunId, request: Request) -> int:
    """404 before the stream starts. Not SessionDep: its read transaction would stay open for
    as long as the stream does."""

    def read() -> None:
        with request.app.state.database.reader() as session:
            crud.get_run(session, run_id)

    await run_in_threadpool(read)
    return run_id


@router.get(
    "/runs/{run_id}/events",
    summary="Live progress (Server-Sent Events): stored epochs, then each new one, then the end",
    response_class=EventSourceResponse,
    responses={404: {"model": ErrorOut, "description": "No run with that id"}},
)
async def run_events(
    run_id: Annotated[int, Depends(existing_run)],
    broadcaster: Annotated[Broadcaster, Depends(get_broadcaster)],
    last_event_id: Annotated[
        int,
        Header(
            alias="Last-Event-ID",
            ge=0,
            description="The id of the last event received (an epoch): a reconnecting client "
            "gets only the epochs after it.",
        ),
    ] = 0,
) -> AsyncIterator[ServerSentEvent]:
    """Events, each with JSON data: ``epoch`` (epoch, losses, accuracies, epoch_seconds and the
    mean % of constant weights over all layers and the last two at the run's smallest
    tolerance) for every stored epoch, oldest first, then for each new one as it is stored;
    ``status`` (status, epochs_done, epochs, error) on every status change; ``end``, the same
    with the final status (``deleted`` if the run was deleted), after which the stream ends.
    An ``epoch`` event's id is its epoch, which a reconnecting client sends back as
    ``Last-Event-ID``. A server that shuts down ends its streams without ``end``."""
    async for event in broadcaster.listen(run_id, after=last_event_id):
        epoch = event.data.epoch if isinstance(event.data, EpochEvent) else None
        yield ServerSentEvent(
            event=event.kind,
            data=event.data.model_dump(),
            id=None if epoch is None else str(epoch),
        )
