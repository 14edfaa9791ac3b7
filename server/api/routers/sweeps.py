"""Sweeps: a grid of runs as one experiment (server/views/sweeps.py), and its views."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import SkipValidation

from server.api.deps import SessionDep, SettingsDep, WriteSessionDep
from server.api.routers.params import ID_LIMIT, By, Limit, Offset, Scope, SweepId, Tolerance
from server.core.schemas import (
    ErrorOut,
    SweepConstancyAllOut,
    SweepConstancyOut,
    SweepDifferenceOut,
    SweepIn,
    SweepList,
    SweepMetricsOut,
    SweepOut,
    SweepSummaryOut,
)
from server.views import sweeps
from server.views.figures.answer import PNG_RESPONSE, AnswerDep
from server.views.figures.draw import (
    MetricName,
    draw_sweep_constancy,
    draw_sweep_difference,
    draw_sweep_metrics,
    draw_sweep_summary,
    sweep_label,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "No sweep with that id"}}
NOT_COMPUTED = {
    404: {"model": ErrorOut, "description": "Unknown sweep, or a tolerance/layer/epoch not there"}
}
SummaryScopeQuery = Annotated[
    sweeps.SummaryScope,
    Query(
        description="layers (a line per layer), means (all and last2), all, last2 or a layer index"
    ),
]


def _label(sweep: sweeps.Sweep) -> str:
    return sweep_label(sweep.id, sweep.name)


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


@router.get(
    "/{sweep_id}/constancy",
    summary="Per group: mean % of weights constant per epoch with its 95% interval",
    response_model=SweepConstancyOut | SweepConstancyAllOut,
    responses=NOT_COMPUTED | PNG_RESPONSE,
)
def get_sweep_constancy(
    sweep_id: SweepId,
    session: SessionDep,
    answer: AnswerDep,
    tol: Tolerance = None,
    scope: Scope = "all",
    by: By = None,
) -> SweepConstancyOut | SweepConstancyAllOut | Response:
    """Without ``tol``, every tolerance all the runs share. PNG: one panel per tolerance, one
    line per group with its interval shaded."""
    sweep = sweeps.get_sweep(session, sweep_id)
    fields = sweeps.parse_by(sweep, by)
    data = sweeps.constancy(session, sweep, tol, scope, fields)
    return answer(data, draw_sweep_constancy, _label(sweep))


@router.get(
    "/{sweep_id}/metrics",
    summary="Per group: mean loss and accuracy per epoch with their 95% intervals",
    response_model=SweepMetricsOut,
    responses=NOT_FOUND | PNG_RESPONSE,
)
def get_sweep_metrics(
    sweep_id: SweepId,
    session: SessionDep,
    answer: AnswerDep,
    metric: Annotated[MetricName, Query(description="PNG: loss or accuracy")] = "loss",
    by: By = None,
) -> SweepMetricsOut | Response:
    """PNG: train and test panels, one line per group with its interval shaded."""
    sweep = sweeps.get_sweep(session, sweep_id)
    data = sweeps.metrics(session, sweep, sweeps.parse_by(sweep, by))
    return answer(data, draw_sweep_metrics, metric, _label(sweep))


@router.get(
    "/{sweep_id}/summary",
    summary="Dose-response: every group's mean and 95% interval at one epoch",
    response_model=SweepSummaryOut,
    responses=NOT_COMPUTED | PNG_RESPONSE,
)
def get_sweep_summary(
    sweep_id: SweepId,
    session: SessionDep,
    answer: AnswerDep,
    tol: Tolerance = None,
    scope: SummaryScopeQuery = "means",
    epoch: Annotated[
        int | None, Query(ge=1, le=1000, description="default: the last epoch every group has")
    ] = None,
    by: By = None,
) -> SweepSummaryOut | Response:
    """PNG: the first numeric field of ``by`` on a symlog x axis (0 beside 1e-4..1e-2), one
    line per layer or scope, one panel per tolerance."""
    sweep = sweeps.get_sweep(session, sweep_id)
    data = sweeps.summary(session, sweep, tol, scope, epoch, sweeps.parse_by(sweep, by))
    return answer(data, draw_sweep_summary, _label(sweep))


@router.get(
    "/{sweep_id}/difference",
    summary="Group b minus group a per epoch, with its 95% interval (Welch or paired)",
    response_model=SweepDifferenceOut,
    responses=NOT_COMPUTED | PNG_RESPONSE,
)
def get_sweep_difference(
    sweep_id: SweepId,
    session: SessionDep,
    answer: AnswerDep,
    a: Annotated[int, Query(ge=0, lt=ID_LIMIT, description="a group's index in the views")],
    b: Annotated[int, Query(ge=0, lt=ID_LIMIT, description="a group's index in the views")],
    tol: Annotated[float, Query(ge=0, allow_inf_nan=False, description="one of the tolerances")],
    scope: Scope = "all",
    method: Annotated[
        Literal["welch", "paired"],
        Query(
            description="welch: unequal variances, Welch–Satterthwaite df; paired: runs matched "
            "by their grid values outside by (e.g. seed), t with pairs−1 df"
        ),
    ] = "welch",
    by: By = None,
) -> SweepDifferenceOut | Response:
    sweep = sweeps.get_sweep(session, sweep_id)
    fields = sweeps.parse_by(sweep, by)
    data = sweeps.difference(session, sweep, a, b, tol, scope, method, fields)
    return answer(data, draw_sweep_difference, _label(sweep))
