from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session

from server.api.deps import (
    AdmittedSpec,
    ReadTrip,
    SessionDep,
    SettingsDep,
    WriteSessionDep,
    WriteTrip,
)
from server.api.routers.params import Limit, Offset, RunId
from server.core.errors import NotComputed
from server.core.schemas import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    ErrorOut,
    RunList,
    RunOut,
    RunPatch,
    RunStatus,
)
from server.store import crud
from server.store.models import Run

router = APIRouter(prefix="/runs", tags=["runs"])

BINARY = {"type": "string", "format": "binary"}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No run with that id"}}
CONFLICT = {409: {"model": ErrorOut, "description": "Not possible in the run's status"}}


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a training job (queued for a worker)",
    response_description="The run, with every default of its spec filled in",
)
async def create_run(
    spec: AdmittedSpec,
    trip: WriteTrip,
    response: Response,
    priority: Annotated[
        int,
        Query(
            ge=PRIORITY_MIN,
            le=PRIORITY_MAX,
            description="Claims take higher priorities first, then the oldest run",
        ),
    ] = 0,
) -> RunOut:
    def create(session: Session) -> RunOut:
        run = crud.create_run(session, spec, priority=priority)
        session.commit()
        return run_out(run)

    run = await trip(create)
    response.headers["Location"] = f"/runs/{run.id}"
    return run


@router.get("", summary="List runs, newest first")
async def list_runs(
    trip: ReadTrip,
    status: Annotated[
        RunStatus | None, Query(description="Only runs in this status (default: all)")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RunList:
    def page(session: Session) -> RunList:
        total, runs = crud.list_runs(session, status, limit, offset)
        return RunList(total=total, limit=limit, offset=offset, runs=[run_out(r) for r in runs])

    return await trip(page)


@router.get("/{run_id}", summary="One run", responses=NOT_FOUND)
async def get_run(run_id: RunId, trip: ReadTrip) -> RunOut:
    return await trip(lambda session: run_out(crud.get_run(session, run_id)))


@router.patch(
    "/{run_id}",
    summary="Change a run's priority (when it is claimed, not what it computes)",
    responses=NOT_FOUND,
)
def patch_run(run_id: RunId, patch: RunPatch, session: WriteSessionDep) -> RunOut:
    run = crud.set_priority(session, run_id, patch.priority)
    session.commit()
    return run_out(run)


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel: a queued run at once, a running one at its next batch",
    responses=NOT_FOUND | CONFLICT,
)
def cancel_run(run_id: RunId, session: WriteSessionDep) -> RunOut:
    run = crud.request_cancel(session, run_id)
    session.commit()
    return run_out(run)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a run that is not running, with its results and files",
    responses=NOT_FOUND | CONFLICT,
)
def delete_run(run_id: RunId, session: WriteSessionDep, settings: SettingsDep) -> None:
    crud.delete_run(session, run_id)
    session.commit()
    settings.run_files(run_id).remove()


@router.get(
    "/{run_id}/report",
    summary="The run's page in the UI (this older report page moved there)",
    status_code=status.HTTP_308_PERMANENT_REDIRECT,
    response_class=RedirectResponse,
    responses={308: {"description": "To /ui/runs/{run_id}"}} | NOT_FOUND,
)
def get_report(run_id: RunId, session: SessionDep) -> RedirectResponse:
    crud.get_run(session, run_id)
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.get(
    "/{run_id}/snapshots/{epoch}",
    summary="An epoch's weights as .npz, keyed by state_dict name (keep_snapshots runs)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        404: {"model": ErrorOut, "description": "Unknown run, or no snapshot of that epoch"},
    },
)
def get_snapshot(
    run_id: RunId,
    epoch: Annotated[int, Path(ge=0, description="0 = the initial weights")],
    session: SessionDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """Streamed from the run's files (a local file or the bucket's object), never whole in
    memory."""
    run = crud.get_run(session, run_id)
    if not run.spec.get("keep_snapshots"):
        raise NotComputed(f"run {run_id} keeps no snapshots (keep_snapshots is false)")
    files = settings.run_files(run_id)
    missing = NotComputed(
        f"run {run_id} has no snapshot of epoch {epoch}; it has epochs 0..{run.epochs_done}"
    )
    if epoch > run.epochs_done:
        raise missing
    try:
        size, chunks = files.stream(files.snapshot(epoch))
    except FileNotFoundError:
        raise missing from None
    name = f"run{run_id}_epoch{epoch:04d}.npz"
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "content-length": str(size),
            "content-disposition": f'attachment; filename="{name}"',
        },
    )
