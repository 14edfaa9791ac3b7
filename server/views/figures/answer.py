"""Content negotiation for the analysis views: JSON, the same data as a PNG, or as a CSV table.

:class:`Answer` is what a request asks for: its format (``format`` wins over ``Accept``), the
figure's size and the renderer to draw it with; the view registry (server/views/registry.py)
answers in that form. The PNG twins of the views are here too."""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server.views.figures.draw import FigureOptions
from server.views.figures.render import Renderer, RendererDep

ResponseFormat = Literal["json", "png", "csv"]
PNG = "image/png"
CSV = "text/csv"
# The answer depends on Accept: caches must key on it.
VARY = {"Vary": "Accept"}
# For the OpenAPI document: these routes answer image/png and text/csv as well as JSON.
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            PNG: {"schema": {"type": "string", "format": "binary"}},
            CSV: {"schema": {"type": "string"}},
        },
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


async def response_format(
    request: Request,
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

    Ties and ``*/*`` (curl, browsers opening the URL) mean JSON, the views' first form. Async,
    as the other light dependencies: FastAPI runs a plain ``def`` in its thread pool, a hop that
    costs more than the work."""
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


@dataclass(frozen=True)
class Answer:
    """The request's format and figure options, and the renderer to draw with."""

    format: ResponseFormat
    options: FigureOptions
    renderer: Renderer


async def requested_answer(format: FormatDep, options: OptionsDep, renderer: RendererDep) -> Answer:
    return Answer(format, options, renderer)


AnswerDep = Annotated[Answer, Depends(requested_answer)]


# --- PNG twins: every view with a figure is also an operation of its own that answers only PNG
# (`GET /runs/{run_id}/constancy.png` is `GET /runs/{run_id}/constancy?format=png`). A generated
# client decodes one media type per status, so the negotiated operation alone would leave it no
# way to get the PNG; the twins are derived from the document, so every figure route has one.

PNG_SUFFIX = ".png"


def figure_paths(schema: dict[str, Any]) -> list[str]:
    """Paths whose GET answers JSON or, negotiated, a PNG (the routes declaring PNG_RESPONSE)."""
    paths = []
    for path, operations in schema.get("paths", {}).items():
        content = operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
        if PNG in content and "application/json" in content:
            paths.append(path)
    return paths


def add_png_twins(schema: dict[str, Any]) -> None:
    """Document each figure path's twin: its parameters but ``format``, a PNG-only 200 and its
    error answers; operation id ``<id>_png``. Idempotent."""
    for path in figure_paths(schema):
        operation = copy.deepcopy(schema["paths"][path]["get"])
        operation["operationId"] = f"{operation['operationId']}_png"
        operation["summary"] = f"{operation.get('summary', '')} (PNG)".strip()
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p.get("name") != "format"
        ]
        operation["responses"]["200"] = {
            "description": "The figure as a PNG",
            "content": {PNG: {"schema": {"type": "string", "format": "binary"}}},
        }
        schema["paths"].setdefault(f"{path}{PNG_SUFFIX}", {"get": operation})


def _template_regex(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


class PngTwins:
    """ASGI middleware: ``<figure path>.png?…`` is served as ``<figure path>?…&format=png``."""

    def __init__(self, app: ASGIApp, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self._openapi = openapi
        self._figures: list[re.Pattern[str]] | None = None

    def _is_figure(self, path: str) -> bool:
        if self._figures is None:
            self._figures = [_template_regex(p) for p in figure_paths(self._openapi())]
        return any(regex.match(path) for regex in self._figures)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.endswith(PNG_SUFFIX):
            view = path.removesuffix(PNG_SUFFIX)
            if self._is_figure(view):
                query = [
                    part
                    for part in scope.get("query_string", b"").split(b"&")
                    if part and part.split(b"=", 1)[0] != b"format"
                ]
                scope = dict(
                    scope,
                    path=view,
                    raw_path=view.encode(),
                    query_string=b"&".join([*query, b"format=png"]),
                )
        await self.app(scope, receive, send)
