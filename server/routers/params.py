"""Query-parameter types shared by the routers, and JSON/PNG/CSV negotiation.

Bad values answer 422 naming the parameter."""

from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from server import tables
from server.analysis import CompareScope
from server.figures.options import FigureOptions

MAX_COMPARED_RUNS = 50
# Ids are 64-bit database integers: a larger one names no run (422, not a driver overflow).
MAX_ID = 2**63 - 1

RunId = Annotated[int, Path(ge=1, le=MAX_ID)]

Tolerance = Annotated[
    float | None,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="One of the run's tolerances; without it, every tolerance.",
    ),
]


def _split_commas(value: object) -> object:
    # Accept both ?runs=1,2 and ?runs=1&runs=2.
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",")]
    return value


def _distinct(ids: list[int]) -> list[int]:
    if len(set(ids)) != len(ids):
        raise ValueError("run ids must be distinct")
    return ids


RunIds = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_ID)]],
    BeforeValidator(_split_commas),
    AfterValidator(_distinct),
    Query(
        min_length=1,
        max_length=MAX_COMPARED_RUNS,
        description="Comma-separated run ids, e.g. 1,2",
    ),
]

Scope = Annotated[
    CompareScope,
    Query(description="all: mean of all layers; last2: mean of the last two; or a layer index"),
]

# width/height/dpi of a PNG (ignored by JSON answers).
Figure = Annotated[FigureOptions, Query()]

# Content negotiation for the views that have PNG and CSV twins. ``format`` wins over ``Accept``.
ResponseFormat = Literal["json", "png", "csv"]
PNG = "image/png"
CSV = "text/csv"
# For the OpenAPI document: these routes answer image/png and text/csv as well as JSON.
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {PNG: {}, CSV: {"schema": {"type": "string"}}},
        "description": "JSON; a PNG with format=png or Accept: image/png, a tidy table (one row "
        "per value) with format=csv or Accept: text/csv",
    }
}


def _accept_quality(accept: str) -> dict[str, float]:
    """Media range → q from an Accept header; malformed q values count as 0."""
    qualities: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            qualities[media.lower()] = q
    return qualities


def response_format(
    request: Request,
    response: Response,
    format: Annotated[
        ResponseFormat | None,
        Query(
            description="json (default), png or csv; without it, Accept: image/png or text/csv "
            "asks for those"
        ),
    ] = None,
) -> ResponseFormat:
    """``format``, else PNG or CSV when Accept ranks image/png (or image/*) or text/csv above
    application/json (PNG first on a tie between them).

    Ties and ``*/*`` (curl, browsers opening the URL) mean JSON, the views' first form."""
    response.headers["Vary"] = "Accept"
    if format is not None:
        return format
    quality = _accept_quality(request.headers.get("accept", ""))
    png = quality.get(PNG, quality.get("image/*", 0.0))
    csv = quality.get(CSV, 0.0)
    json = quality.get("application/json", 0.0)
    if png > json and png >= csv:
        return "png"
    return "csv" if csv > json else "json"


FormatDep = Annotated[ResponseFormat, Depends(response_format)]


def png_response(png: bytes) -> Response:
    return Response(png, media_type=PNG, headers={"Vary": "Accept"})


def csv_response(view: BaseModel) -> Response:
    """The view as a tidy CSV table (server/tables.py)."""
    return Response(tables.csv_text(view), media_type=CSV, headers={"Vary": "Accept"})
