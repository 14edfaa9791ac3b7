import shutil
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import FileResponse

from server import analysis, store
from server.deps import SessionDep, SettingsDep, WriteSessionDep
from server.models import Run
from server.routers.params import Tolerance
from server.schemas import (
    ConstancyAllOut,
    ConstancyOut,
    ErrorOut,
    MetricsOut,
    RunList,
    RunOut,
    RunSpec,
    RunStatus,
    WeightStatsOut,
)

router = APIRouter(prefix="/runs", tags=["runs"])

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
def create_run(spec: RunSpec, session: WriteSessionDep, response: Response) -> RunOut:
    run = store.create_run(session, spec)
    session.commit()
    response.headers["Location"] = f"/runs/{run.id}"
    return run_out(run)


@router.get("", summary="List runs, newest first")
def list_runs(
    session: SessionDep,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    total, runs = store.list_runs(session, status, limit, offset)
    return RunList(total=total, limit=limit, offset=offset, runs=[run_out(r) for r in runs])


@router.get("/{run_id}", summary="One run", responses=NOT_FOUND)
def get_run(run_id: int, session: SessionDep) -> RunOut:
    return run_out(store.get_run(session, run_id))


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel: a queued run at once, a running one at its next batch",
    responses=NOT_FOUND | CONFLICT,
)
def cancel_run(run_id: int, session: WriteSessionDep) -> RunOut:
    run = store.request_cancel(session, run_id)
    session.commit()
    return run_out(run)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a run that is not running, with its results and files",
    responses=NOT_FOUND | CONFLICT,
)
def delete_run(run_id: int, session: WriteSessionDep, settings: SettingsDep) -> None:
    store.delete_run(session, run_id)
    session.commit()
    shutil.rmtree(settings.run_dir(run_id), ignore_errors=True)


@router.get(
    "/{run_id}/metrics",
    summary="Loss and accuracy (fractions) per epoch so far",
    responses=NOT_FOUND,
)
def get_metrics(run_id: int, session: SessionDep) -> MetricsOut:
    return analysis.metrics(session, store.get_run(session, run_id))


@router.get(
    "/{run_id}/constancy",
    summary="% of each layer's weights constant from epoch e-1 to e",
    responses={404: {"model": ErrorOut, "description": "Unknown run or tolerance not computed"}},
)
def get_constancy(
    run_id: int, session: SessionDep, tol: Tolerance = None
) -> ConstancyOut | ConstancyAllOut:
    """Per layer, the mean of all layers and of the last two; without ``tol``, every tolerance."""
    run = store.get_run(session, run_id)
    if tol is None:
        return analysis.constancy_all(session, run)
    return analysis.constancy(session, run, tol)


@router.get(
    "/{run_id}/weights",
    summary="Each layer's weight variance per epoch (epoch 0 = initial weights)",
    responses=NOT_FOUND,
)
def get_weight_stats(run_id: int, session: SessionDep) -> WeightStatsOut:
    return analysis.weight_stats(session, store.get_run(session, run_id))


@router.get(
    "/{run_id}/snapshots/{epoch}",
    summary="An epoch's weights as .npz, keyed by state_dict name (keep_snapshots runs)",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        404: {"model": ErrorOut, "description": "Unknown run, or no snapshot of that epoch"},
    },
)
def get_snapshot(
    run_id: int,
    epoch: Annotated[int, Path(ge=0, description="0 = the initial weights")],
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    run = store.get_run(session, run_id)
    if not run.spec.get("keep_snapshots"):
        raise analysis.NotComputed(f"run {run_id} keeps no snapshots (keep_snapshots is false)")
    path = settings.snapshot_path(run_id, epoch)
    if epoch > run.epochs_done or not path.is_file():
        raise analysis.NotComputed(
            f"run {run_id} has no snapshot of epoch {epoch}; it has epochs 0..{run.epochs_done}"
        )
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"run{run_id}_epoch{epoch:04d}.npz"
    )
