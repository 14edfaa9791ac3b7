from fastapi import APIRouter

from server import analysis, store
from server.deps import SessionDep
from server.routers.params import RunIds, Scope, Tolerance
from server.schemas import CompareAllOut, CompareOut, ErrorOut

router = APIRouter(tags=["compare"])


@router.get(
    "/compare",
    summary="Runs side by side: % of weights constant per epoch at a tolerance",
    responses={
        404: {"model": ErrorOut, "description": "Unknown run, or a tolerance/layer not computed"}
    },
)
def compare_runs(
    session: SessionDep, runs: RunIds, tol: Tolerance = None, scope: Scope = "all"
) -> CompareOut | CompareAllOut:
    """One entry per run at ``tol``; without ``tol``, one result per tolerance the runs share."""
    found = [store.get_run(session, run_id) for run_id in runs]
    if tol is None:
        return analysis.compare_all(session, found, scope)
    return analysis.compare(session, found, tol, scope)
