"""Content negotiation for the analysis views: JSON, the same data as a PNG, or as a CSV table.

A route reads its data and returns ``answer(data, draw, *args)``: the data itself (FastAPI
serialises it as JSON), the figure ``draw`` makes of it through the render cache when the
request asks for a PNG, or its tidy table (server/tables.py) when it asks for CSV. ``format``
wins over ``Accept``."""

from collections.abc import Hashable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from server import tables
from server.figures.draw import FigureOptions
from server.figures.render import Draw, RendererDep

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

T = TypeVar("T", bound=BaseModel)


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
# width/height/dpi of a PNG (ignored by JSON answers).
OptionsDep = Annotated[FigureOptions, Query()]


class Answer:
    """The request's format and figure options, and the renderer to draw with."""

    def __init__(self, format: FormatDep, options: OptionsDep, renderer: RendererDep) -> None:
        self.format = format
        self.options = options
        self.renderer = renderer

    def __call__(self, data: T, draw: Draw, *args: Hashable) -> T | Response:
        if self.format == "json":
            return data
        if self.format == "csv":
            return Response(tables.csv_text(data), media_type=CSV, headers={"Vary": "Accept"})
        png = self.renderer.render(draw, data, self.options, *args)
        return Response(png, media_type=PNG, headers={"Vary": "Accept"})


AnswerDep = Annotated[Answer, Depends()]
