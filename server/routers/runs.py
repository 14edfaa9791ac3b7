import shutil
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.orm import Session

from server import analysis, store
from server.deps import AdmittedSpec, SessionDep, SettingsDep, WriteSessionDep
from server.figures import pngs
from server.figures.options import ConstancyScope, MetricName
from server.figures.report import report_html
from server.models import Run
from server.render import RendererDep
from server.routers.params import (
    MAX_ID,
    PNG_RESPONSE,
    Figure,
    FormatDep,
    RunId,
    Tolerance,
    csv_response,
    png_response,
)
from server.schemas import (
    ConstancyAllOut,
    ConstancyOut,
    ErrorOut,
    MetricsOut,
    RunList,
    RunOut,
    RunStatus,
    WeightStatsOut,
)

router = APIRouter(prefix="/runs", tags=["runs"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "No run with that id"}}
CONFLICT = {409: {"model": ErrorOut, "description": "Not possible in the run's status"}}


T = TypeVar("T")

ConstancyScopeQuery = Annotated[
    ConstancyScope,
    Query(
        description="PNG: layers (a line each), all (mean of all layers), last2 (of the last two)"
    ),
]
MetricQuery = Annotated[MetricName, Query(description="PNG: loss or accuracy (JSON has both)")]


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


async def read_run(
    session: Session, run_id: int, view: Callable[[Session, Run], T]
) -> tuple[RunOut, T]:
    """The run and ``view`` of its results, read off the event loop."""

    def read() -> tuple[RunOut, T]:
        # The run first, then its results, in one read transaction: a figure cached under the
        # run's progress (status, epochs done) then never lacks an epoch that progress promises.
        run = store.get_run(session, run_id)
        return run_out(run), view(session, run)

    return await run_in_threadpool(read)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a training job (queued for a worker)",
    response_description="The run, with every default of its spec filled in",
)
def create_run(spec: AdmittedSpec, session: WriteSessionDep, response: Response) -> RunOut:
    run = store.create_run(session, spec)
    session.commit()
    response.headers["Location"] = f"/runs/{run.id}"
    return run_out(run)


@router.get("", summary="List runs, newest first")
def list_runs(
    session: SessionDep,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> RunList:
    total, runs = store.list_runs(session, status, limit, offset)
    return RunList(total=total, limit=limit, offset=offset, runs=[run_out(r) for r in runs])


@router.get("/{run_id}", summary="One run", responses=NOT_FOUND)
def get_run(run_id: RunId, session: SessionDep) -> RunOut:
    return run_out(store.get_run(session, run_id))


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel: a queued run at once, a running one at its next batch",
    responses=NOT_FOUND | CONFLICT,
)
def cancel_run(run_id: RunId, session: WriteSessionDep) -> RunOut:
    run = store.request_cancel(session, run_id)
    session.commit()
    return run_out(run)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a run that is not running, with its results and files",
    responses=NOT_FOUND | CONFLICT,
)
def delete_run(run_id: RunId, session: WriteSessionDep, settings: SettingsDep) -> None:
    store.delete_run(session, run_id)
    session.commit()
    shutil.rmtree(settings.run_dir(run_id), ignore_errors=True)


@router.get(
    "/{run_id}/metrics",
    summary="Loss and accuracy (fractions) per epoch so far",
    response_model=MetricsOut,
    responses=NOT_FOUND | PNG_RESPONSE,
)
async def get_metrics(
    run_id: RunId,
    session: SessionDep,
    fmt: FormatDep,
    options: Figure,
    renderer: RendererDep,
    metric: MetricQuery = "loss",
) -> MetricsOut | Response:
    """PNG: train vs test ``metric`` per epoch."""
    run, data = await read_run(session, run_id, analysis.metrics)
    if fmt == "png":
        return png_response(await pngs.metrics_png(renderer, run, data, metric, options))
    if fmt == "csv":
        return csv_response(data)
    return data


@router.get(
    "/{run_id}/constancy",
    summary="% of each layer's weights constant from epoch e-1 to e",
    response_model=ConstancyOut | ConstancyAllOut,
    responses={404: {"model": ErrorOut, "description": "Unknown run or tolerance not computed"}}
    | PNG_RESPONSE,
)
async def get_constancy(
    run_id: RunId,
    session: SessionDep,
    fmt: FormatDep,
    options: Figure,
    renderer: RendererDep,
    tol: Tolerance = None,
    scope: ConstancyScopeQuery = "layers",
) -> ConstancyOut | ConstancyAllOut | Response:
    """Per layer, the mean of all layers and of the last two; without ``tol``, every tolerance.

    PNG: one panel per tolerance (one with ``tol``), drawing what ``scope`` says."""

    def view(session: Session, run: Run) -> ConstancyOut | ConstancyAllOut:
        if tol is None:
            return analysis.constancy_all(session, run)
        return analysis.constancy(session, run, tol)

    run, data = await read_run(session, run_id, view)
    if fmt == "png":
        return png_response(await pngs.constancy_png(renderer, run, data, scope, options))
    if fmt == "csv":
        return csv_response(data)
    return data


@router.get(
    "/{run_id}/weights",
    summary="Each layer's weight variance per epoch (epoch 0 = initial weights)",
    response_model=WeightStatsOut,
    responses=NOT_FOUND | PNG_RESPONSE,
)
async def get_weight_stats(
    run_id: RunId, session: SessionDep, fmt: FormatDep, options: Figure, renderer: RendererDep
) -> WeightStatsOut | Response:
    run, data = await read_run(session, run_id, analysis.weight_stats)
    if fmt == "png":
        return png_response(await pngs.weights_png(renderer, run, data, options))
    if fmt == "csv":
        return csv_response(data)
    return data


@router.get(
    "/{run_id}/report",
    summary="One HTML page with the run's spec, status and every figure inline",
    response_class=HTMLResponse,
    responses=NOT_FOUND,
)
async def get_report(
    run_id: RunId, session: SessionDep, options: Figure, renderer: RendererDep
) -> HTMLResponse:
    """Self-contained (figures as data: URIs); ``width``/``height``/``dpi`` size each figure."""

    def view(session: Session, run: Run) -> tuple[MetricsOut, ConstancyAllOut, WeightStatsOut]:
        return (
            analysis.metrics(session, run),
            analysis.constancy_all(session, run),
            analysis.weight_stats(session, run),
        )

    run, (metrics, constancy, weights) = await read_run(session, run_id, view)
    return HTMLResponse(await report_html(renderer, run, metrics, constancy, weights, options))


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
    run_id: RunId,
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
