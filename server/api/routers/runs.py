from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import HTMLResponse, StreamingResponse

from server.api.deps import AdmittedSpec, SessionDep, SettingsDep, WriteSessionDep
from server.api.routers.params import Limit, Offset, RunId, Tolerance
from server.core.errors import NotComputed
from server.core.schemas import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    ConstancyAllOut,
    ConstancyOut,
    ErrorOut,
    MetricsOut,
    RunList,
    RunOut,
    RunPatch,
    RunStatus,
    WeightStatsOut,
)
from server.core.scope import FigureScope
from server.store import crud
from server.store.models import Run
from server.views import analysis, posthoc
from server.views.figures.answer import PNG_RESPONSE, AnswerDep, OptionsDep
from server.views.figures.draw import (
    MetricName,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    label_of,
)
from server.views.figures.render import RendererDep
from server.views.figures.report import report_html

router = APIRouter(prefix="/runs", tags=["runs"])

BINARY = {"type": "string", "format": "binary"}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No run with that id"}}
CONFLICT = {409: {"model": ErrorOut, "description": "Not possible in the run's status"}}

FigureScopeQuery = Annotated[
    FigureScope,
    Query(
        description="PNG: layers (a line each), all (mean of all layers), last2 (of the last two)"
    ),
]
MetricQuery = Annotated[MetricName, Query(description="PNG: loss or accuracy (JSON has both)")]


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a training job (queued for a worker)",
    response_description="The run, with every default of its spec filled in",
)
def create_run(
    spec: AdmittedSpec,
    session: WriteSessionDep,
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
    run = crud.create_run(session, spec, priority=priority)
    session.commit()
    response.headers["Location"] = f"/runs/{run.id}"
    return run_out(run)


@router.get("", summary="List runs, newest first")
def list_runs(
    session: SessionDep,
    status: Annotated[
        RunStatus | None, Query(description="Only runs in this status (default: all)")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RunList:
    total, runs = crud.list_runs(session, status, limit, offset)
    return RunList(total=total, limit=limit, offset=offset, runs=[run_out(r) for r in runs])


@router.get("/{run_id}", summary="One run", responses=NOT_FOUND)
def get_run(run_id: RunId, session: SessionDep) -> RunOut:
    return run_out(crud.get_run(session, run_id))


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
    "/{run_id}/metrics",
    summary="Loss and accuracy (fractions) per epoch so far",
    response_model=MetricsOut,
    responses=NOT_FOUND | PNG_RESPONSE,
)
def get_metrics(
    run_id: RunId, session: SessionDep, answer: AnswerDep, metric: MetricQuery = "loss"
) -> MetricsOut | Response:
    """PNG: train vs test ``metric`` per epoch."""
    run = crud.get_run(session, run_id)
    return answer(analysis.metrics(session, run), draw_metrics, metric, label_of(run_out(run)))


@router.get(
    "/{run_id}/constancy",
    summary="% of each layer's weights constant from epoch e-1 to e",
    response_model=ConstancyOut | ConstancyAllOut,
    responses={404: {"model": ErrorOut, "description": "Unknown run or tolerance not computed"}}
    | PNG_RESPONSE,
)
def get_constancy(
    run_id: RunId,
    session: SessionDep,
    settings: SettingsDep,
    answer: AnswerDep,
    tol: Tolerance = None,
    scope: FigureScopeQuery = "layers",
) -> ConstancyOut | ConstancyAllOut | Response:
    """Per layer, the mean of all layers and of the last two; without ``tol``, every tolerance.

    A ``tol`` the run did not measure is read from its movement spectrum when it is on the
    ladder, or computed exactly from its snapshots when it has them (``keep_snapshots``).

    PNG: one panel per tolerance (one with ``tol``), drawing what ``scope`` says."""
    run = crud.get_run(session, run_id)
    data: ConstancyOut | ConstancyAllOut = (
        analysis.constancy_all(session, run)
        if tol is None
        else posthoc.constancy(session, run, tol, settings.run_files(run_id))
    )
    return answer(data, draw_constancy, scope, label_of(run_out(run)))


@router.get(
    "/{run_id}/weights",
    summary="Each layer's weight variance per epoch (epoch 0 = initial weights)",
    response_model=WeightStatsOut,
    responses=NOT_FOUND | PNG_RESPONSE,
)
def get_weight_stats(
    run_id: RunId, session: SessionDep, answer: AnswerDep
) -> WeightStatsOut | Response:
    run = crud.get_run(session, run_id)
    return answer(analysis.weight_stats(session, run), draw_weight_stats, label_of(run_out(run)))


@router.get(
    "/{run_id}/report",
    summary="One HTML page with the run's spec, status and every figure inline",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}} | NOT_FOUND,
)
def get_report(
    run_id: RunId, session: SessionDep, options: OptionsDep, renderer: RendererDep
) -> HTMLResponse:
    """Self-contained (figures as data: URIs); ``width``/``height``/``dpi`` size each figure."""
    run = crud.get_run(session, run_id)
    metrics = analysis.metrics(session, run)
    constancy = analysis.constancy_all(session, run)
    weights = analysis.weight_stats(session, run)
    return HTMLResponse(report_html(renderer, run_out(run), metrics, constancy, weights, options))


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
