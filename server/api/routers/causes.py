"""Why weights stay exactly constant, every one accounted for: no gradient or rounded away."""

from fastapi import APIRouter, Response

from server.api.deps import SessionDep
from server.api.routers.params import RunId
from server.api.routers.runs import run_out
from server.core.schemas import ErrorOut
from server.store import crud
from server.views import causes
from server.views.figures.answer import PNG_RESPONSE, AnswerDep
from server.views.figures.draw import label_of

router = APIRouter()


@router.get(
    "/runs/{run_id}/causes",
    tags=["runs"],
    summary="Every exactly constant weight by cause: no gradient (dead unit, dead pair) or rounded",
    response_model=causes.CausesOut,
    responses={
        404: {
            "model": ErrorOut,
            "description": "Unknown run, or one trained before decaylab counted the causes",
        }
    }
    | PNG_RESPONSE,
)
def get_causes(
    run_id: RunId, session: SessionDep, answer: AnswerDep
) -> causes.CausesOut | Response:
    """Per weight matrix and epoch, its weights exactly unchanged from epoch e-1 to e
    (``constant``) = those whose loss gradient was 0 in every batch (``no_gradient``; of them
    ``in_dead_unit`` in a dead unit's row or column, the rest dead pairs) + those that got a
    gradient and still ended the epoch bit-identical (``rounded``). Exact counts.

    PNG: a panel per weight matrix, each cause in % of its weights over the epochs."""
    run = crud.get_run(session, run_id)
    return answer(causes.causes(session, run), causes.draw_causes, label_of(run_out(run)))
