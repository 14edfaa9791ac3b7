"""Sweeps: a grid of runs as one experiment (server/views/sweeps.py), and its views."""

from fastapi import APIRouter, Response, status

from server.api.deps import SessionDep, SettingsDep, WriteSessionDep
from server.api.routers.params import Limit, Offset, SweepId
from server.core.schemas import (
    ErrorOut,
    SweepIn,
    SweepList,
    SweepOut,
)
from server.views import sweeps

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "No sweep with that id"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a grid of runs (the cartesian product of grid over base) as one sweep",
    response_description="The sweep with its member runs in grid order",
)
def create_sweep(
    body: SweepIn, session: WriteSessionDep, settings: SettingsDep, response: Response
) -> SweepOut:
    """Every member is validated like ``POST /runs`` (and the grid against
    ``DECAYLAB_MAX_SWEEP_RUNS``) before anything is stored: one 422 lists each invalid field and
    value, e.g. ``loc: ["body", "grid", "weight_decay", 2]``."""
    specs = sweeps.expand(body, settings)
    sweep = sweeps.create_sweep(session, body, specs)
    session.commit()
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return sweeps.sweep_out(session, sweep)


@router.get("", summary="List sweeps, newest first (without their runs)")
def list_sweeps(
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> SweepList:
    total, found = sweeps.list_sweeps(session, limit, offset)
    return SweepList(total=total, limit=limit, offset=offset, sweeps=found)


@router.get("/{sweep_id}", summary="One sweep with its runs", responses=NOT_FOUND)
def get_sweep(sweep_id: SweepId, session: SessionDep) -> SweepOut:
    return sweeps.sweep_out(session, sweeps.get_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel the runs not yet finished: queued ones at once, running ones at their next "
    "batch",
    responses=NOT_FOUND | {409: {"model": ErrorOut, "description": "Every run has finished"}},
)
def cancel_sweep(sweep_id: SweepId, session: WriteSessionDep) -> SweepOut:
    sweep = sweeps.cancel_sweep(session, sweep_id)
    session.commit()
    return sweeps.sweep_out(session, sweep)


@router.delete(
    "/{sweep_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a sweep and its runs, with their results and files",
    responses=NOT_FOUND | {409: {"model": ErrorOut, "description": "A run is still running"}},
)
def delete_sweep(sweep_id: SweepId, session: WriteSessionDep, settings: SettingsDep) -> None:
    run_ids = sweeps.delete_sweep(session, sweep_id)
    session.commit()
    for run_id in run_ids:
        settings.run_files(run_id).remove()
