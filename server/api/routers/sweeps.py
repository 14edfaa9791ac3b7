"""Sweeps: a grid of runs as one experiment (server/views/sweeps.py), and its views."""

from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import SkipValidation

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
    # Documented as SweepIn, validated as a whole by sweeps.admit: FastAPI would stop at the
    # schema's errors, before the grid's repeats, the members and the limits are looked at.
    body: Annotated[SweepIn, SkipValidation],
    session: WriteSessionDep,
    settings: SettingsDep,
    response: Response,
) -> SweepOut:
    """The members are the cartesian product of ``grid`` over ``base``. Before anything is
    stored, the whole body is validated: its schema, each grid field's values distinct, at most
    DECAYLAB_MAX_SWEEP_RUNS members, and every member's spec as ``POST /runs`` validates one
    (RunSpec, CIFAR-10's sizes, the resource limits). One 422 lists every error, each located
    in the body with 0-based positions, e.g. ``loc: ["body", "grid", "weight_decay", 2]``;
    a resource limit's has the type ``resource_limit``."""
    sweep, specs = sweeps.admit(body, settings)
    row = sweeps.create_sweep(session, sweep, specs)
    session.commit()
    response.headers["Location"] = f"/sweeps/{row.id}"
    return sweeps.sweep_out(session, row)


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
