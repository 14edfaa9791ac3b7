from fastapi import APIRouter, Response

from server.api.deps import SessionDep
from server.api.routers.params import RunIds, Scope, Tolerance
from server.core.schemas import CompareAllOut, CompareOut, ErrorOut
from server.store import crud
from server.views import analysis
from server.views.figures.answer import PNG_RESPONSE, AnswerDep
from server.views.figures.draw import draw_compare

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
def compare_runs(
    session: SessionDep,
    runs: RunIds,
    answer: AnswerDep,
    tol: Tolerance = None,
    scope: Scope = "all",
) -> CompareOut | CompareAllOut | Response:
    """One entry per run at ``tol``; without ``tol``, one result per tolerance the runs share.

    PNG: one panel per tolerance, one line per run (in the order of ``runs``)."""
    found = crud.get_runs(session, runs)
    data: CompareOut | CompareAllOut = (
        analysis.compare_all(session, found, scope)
        if tol is None
        else analysis.compare(session, found, tol, scope)
    )
    return answer(data, draw_compare)
