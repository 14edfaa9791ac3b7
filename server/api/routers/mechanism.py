"""Why weights stay constant: dead units, the movement spectrum, and runs' spectra compared."""

from fastapi import APIRouter, Response

from server.api.deps import SessionDep
from server.api.routers.params import RunId, SpectrumRunIds
from server.api.routers.runs import run_out
from server.core.schemas import CompareSpectrumOut, ErrorOut, SpectrumOut, UnitsOut
from server.store import crud
from server.views import mechanism
from server.views.figures.answer import PNG_RESPONSE, AnswerDep
from server.views.figures.draw import draw_compare_spectrum, draw_spectrum, draw_units, label_of

router = APIRouter()

NOT_MEASURED = {
    404: {
        "model": ErrorOut,
        "description": "Unknown run, or one trained before decaylab measured the mechanism",
    }
}


@router.get(
    "/runs/{run_id}/units",
    tags=["runs"],
    summary="Dead ReLU units per epoch, and how much exact constancy they explain",
    response_model=UnitsOut,
    responses=NOT_MEASURED | PNG_RESPONSE,
)
def get_units(run_id: RunId, session: SessionDep, answer: AnswerDep) -> UnitsOut | Response:
    """Per hidden layer, the units whose ReLU output was 0 for every training sample of the
    epoch; per weight matrix, its weights exactly unchanged from epoch e-1 to e and how many of
    those lie in a dead unit's incoming row or outgoing column (each weight once).

    PNG: dead units per layer over the epochs, and per weight matrix the exactly constant
    weights against those dead units explain."""
    run = crud.get_run(session, run_id)
    return answer(mechanism.units(session, run), draw_units, label_of(run_out(run)))


@router.get(
    "/runs/{run_id}/spectrum",
    tags=["runs"],
    summary="% of each layer's weights constant at every tolerance of the shared ladder",
    response_model=SpectrumOut,
    responses=NOT_MEASURED | PNG_RESPONSE,
)
def get_spectrum(run_id: RunId, session: SessionDep, answer: AnswerDep) -> SpectrumOut | Response:
    """The movement spectrum: constancy from epoch e-1 to e at 0 and at log-spaced tolerances
    from 1e-7 to 1 (the same ladder for every run), with the run's basis.

    PNG: a heatmap per layer, epoch × tolerance (log axis), colour = % constant."""
    run = crud.get_run(session, run_id)
    return answer(mechanism.spectrum(session, run), draw_spectrum, label_of(run_out(run)))


@router.get(
    "/compare/spectrum",
    tags=["compare"],
    summary="Runs' movement spectra side by side",
    response_model=CompareSpectrumOut,
    responses=NOT_MEASURED | PNG_RESPONSE,
)
def compare_spectrum(
    session: SessionDep, runs: SpectrumRunIds, answer: AnswerDep
) -> CompareSpectrumOut | Response:
    """Each run's spectrum, in the order of ``runs``.

    PNG: one row of heatmaps per run (a panel per layer), on one colour scale."""
    found = crud.get_runs(session, runs)
    return answer(mechanism.compare_spectrum(session, found), draw_compare_spectrum)
