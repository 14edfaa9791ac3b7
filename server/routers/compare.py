from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from server import analysis, store
from server.deps import SessionDep
from server.figures import pngs
from server.render import RendererDep
from server.routers.params import (
    PNG_RESPONSE,
    Figure,
    FormatDep,
    RunIds,
    Scope,
    Tolerance,
    csv_response,
    png_response,
)
from server.routers.runs import run_out
from server.schemas import CompareAllOut, CompareOut, ErrorOut, RunOut

router = APIRouter(tags=["compare"])


@router.get(
    "/compare",
    summary="Runs side by side: % of weights constant per epoch at a tolerance",
    response_model=CompareOut | CompareAllOut,
    responses={
        404: {"model": ErrorOut, "description": "Unknown run, or a tolerance/layer not computed"}
    }
    | PNG_RESPONSE,
)
async def compare_runs(
    session: SessionDep,
    runs: RunIds,
    fmt: FormatDep,
    options: Figure,
    renderer: RendererDep,
    tol: Tolerance = None,
    scope: Scope = "all",
) -> CompareOut | CompareAllOut | Response:
    """One entry per run at ``tol``; without ``tol``, one result per tolerance the runs share.

    PNG: one panel per tolerance, one line per run (in the order of ``runs``)."""

    def read() -> tuple[list[RunOut], CompareOut | CompareAllOut]:
        # The runs first, then their results, in one read transaction (see runs.read_run).
        found = [store.get_run(session, run_id) for run_id in runs]
        if tol is None:
            data = analysis.compare_all(session, found, scope)
        else:
            data = analysis.compare(session, found, tol, scope)
        return [run_out(run) for run in found], data

    found, data = await run_in_threadpool(read)
    if fmt == "png":
        return png_response(await pngs.compare_png(renderer, found, data, options))
    if fmt == "csv":
        return csv_response(data)
    return data
