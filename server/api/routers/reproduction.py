"""The write-up's claims re-checked on a sweep (server/views/reproduction.py): JSON or Markdown."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from server.api.deps import SessionDep
from server.api.routers.params import SweepId
from server.core.schemas import ErrorOut, ReproductionOut
from server.views import reproduction, sweeps

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
MARKDOWN = "text/markdown; charset=utf-8"


@router.get(
    "/{sweep_id}/reproduction",
    summary="The write-up's claims re-checked: published value, mean over seeds, 95% interval, "
    "verdict",
    response_model=ReproductionOut,
    responses={
        200: {
            "content": {MARKDOWN.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "JSON; the report as Markdown with format=md",
        },
        404: {"model": ErrorOut, "description": "No sweep with that id"},
        409: {
            "model": ErrorOut,
            "description": "The sweep is not weight decay 0 and 0.001 × seeds (all else equal), "
            "or not every run has succeeded",
        },
    },
)
def get_sweep_reproduction(
    sweep_id: SweepId,
    session: SessionDep,
    format: Annotated[
        Literal["json", "md"], Query(description="json (default) or md (the report as Markdown)")
    ] = "json",
) -> ReproductionOut | Response:
    """Every claim of the write-up with the rule its verdict follows; the Markdown refers to the
    figures by file name (``figures`` says which view draws each)."""
    report = reproduction.reproduction(session, sweeps.get_sweep(session, sweep_id))
    if format == "md":
        return Response(reproduction.markdown(report) + "\n", media_type=MARKDOWN)
    return report
