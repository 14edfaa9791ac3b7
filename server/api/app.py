"""The FastAPI application factory."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from server import __doc__ as package_doc
from server.api import contract, pages
from server.api.etag import ETagMiddleware
from server.api.events import Broadcaster
from server.api.middleware import OPEN_PATHS, BearerAuth, BodyLimit, SameOriginWrites
from server.api.responses import FinalNewline
from server.api.routers import events, health, reproduction, runs, sweeps
from server.core.errors import DomainError
from server.core.settings import Settings, get_settings
from server.store.db import Database
from server.views import registry
from server.views.figures.answer import PngTwins, add_png_twins
from server.views.figures.render import Renderer

DESCRIPTION = """How does weight decay change the way each layer's weights move during training?

Submit a training job with `POST /runs`; a worker (`python -m worker`) trains it and records,
after every epoch, the share of each layer's weights that stayed constant (changed by at most
`tol` times their size). Read the results per layer, averaged over all layers or the last two,
and compare runs with `GET /compare`.
"""


# Swagger UI's JS, CSS and icon, served by the app itself (/docs works without internet): the
# files the fastapi-swagger package ships (pinned in constraints.txt), not a CDN.
DOCS_ASSETS = "/docs/assets"
SWAGGER_ASSETS_PACKAGE = ("fastapi_swagger", "resources")


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route functions' names (``get_run``, ``list_runs``): stable
    and readable in generated clients. Every router of the app gets this (FastAPI's default is
    ``get_run_runs__run_id__get``); a name used twice is a test failure (test_openapi)."""
    return route.name


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path: several routes may share a path
    (GET and DELETE /runs/{run_id}), and Starlette's 405 names only the first one's."""
    routes = request.app.router.routes
    allowed = []
    for method in HTTP_METHODS:
        scope = dict(request.scope, method=method)
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's HTTPException answer, with a final newline, and a 405's ``Allow`` listing
    the methods of every route on the path (Starlette names only the first route's)."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _json_safe(value: Any) -> Any:
    """NaN, infinities, lone surrogates and raw bytes as text: JSON and UTF-8 have no spelling
    for them (a 422 echoes the input: a JSON body may escape a lone surrogate, a non-JSON body is
    bytes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = jsonable_encoder(_json_safe(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)


ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
BINARY = {"type": "string", "format": "binary"}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# Answers any operation with a body can give before the route runs (middleware, body parsing).
BODY_ERRORS = {
    "400": {"description": "The body is not JSON, or not UTF-8", "content": ERROR_JSON},
    "413": {"description": "The body is over DECAYLAB_MAX_BODY_BYTES", "content": ERROR_JSON},
}


def _integer_bounds(node: Any) -> None:
    """FastAPI's OpenAPI models hold every bound as a float (1000.0, 9.2e18): an integer's
    bounds are written back as integers, exactly."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in BOUNDS:
                if isinstance(node.get(key), float) and node[key].is_integer():
                    node[key] = int(node[key])
        for value in node.values():
            _integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integer_bounds(value)


def _contract(schema: dict[str, Any], token: bool) -> dict[str, Any]:
    """What the routes' declarations cannot say, for every operation (so new routes get it):
    integer bounds as integers, binary bodies (PNG, .npz) typed as binary, the links and the
    422 error types (server/api/contract.py), every error answer as JSON (a route answering
    HTML still errs in JSON), the body errors, and with a token set the bearer scheme and its
    401 on all but /health."""
    _integer_bounds(schema)
    add_png_twins(schema)
    contract.add_links(schema)
    contract.add_error_types(schema)
    if token:
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                content = response.get("content", {})
                for media, body in content.items():
                    if media.startswith(("image/", "application/octet-stream")):
                        body["schema"] = dict(BINARY)
                if status[0] in "45" and content and "application/json" not in content:
                    response["content"] = ERROR_JSON
            if "requestBody" in operation:
                for status, response in BODY_ERRORS.items():
                    responses.setdefault(status, response)
            if token and path in OPEN_PATHS:
                operation["security"] = []
            elif token:
                responses.setdefault(
                    "401",
                    {"description": "Missing or wrong bearer token (DECAYLAB_API_TOKEN)"}
                    | {"content": ERROR_JSON},
                )
    return schema


def _openapi_with_contract(app: FastAPI, token: bool) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document; _contract is idempotent, so applying it each time is
        # cheap and also covers a document regenerated after routes were added.
        return _contract(generate(), token)

    app.openapi = openapi  # type: ignore[method-assign]


def _serve_docs(app: FastAPI) -> None:
    """/docs from files the app serves itself: every page decaylab serves works offline."""
    app.mount(DOCS_ASSETS, StaticFiles(packages=[SWAGGER_ASSETS_PACKAGE]), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} · API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app on ``settings`` (default: the environment); brings the schema to head."""
    settings = settings or get_settings()
    # A bucket that cannot be used fails the start, not the first download.
    settings.check_artifacts()
    database = Database(settings.database_url)
    database.upgrade()
    renderer = Renderer()
    # Event streams poll the runs' progress as often as workers look for work.
    broadcaster = Broadcaster(database, interval=settings.poll_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await broadcaster.close()
        renderer.close()
        database.dispose()

    app = FastAPI(
        title="decaylab",
        summary=package_doc,
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        # Served by _serve_docs from local files; ReDoc would need a CDN, so there is none.
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.renderer = renderer
    app.state.view_cache = registry.ViewCache(settings.view_cache_bytes)
    app.state.events = broadcaster
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    routers = (runs, events, health, sweeps, reproduction)
    for router in (*(module.router for module in routers), registry.routes()):
        app.include_router(router)
    pages.install(app)
    _serve_docs(app)
    # Innermost: every JSON answer of a route or an error handler ends with a newline, before
    # the ETag is computed on the body.
    app.add_middleware(FinalNewline)
    app.add_middleware(ETagMiddleware)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SameOriginWrites)
    app.add_middleware(PngTwins, openapi=lambda: app.openapi())
    # Added last, so outermost: a request without the token is refused before anything else.
    if settings.api_token:
        app.add_middleware(
            BearerAuth,
            token=settings.api_token,
            # The login page and its stylesheet; a browser without the cookie is sent there.
            open_paths=OPEN_PATHS | {pages.LOGIN_PATH},
            open_prefixes=(pages.STATIC_PATH + "/",),
            login_path=pages.LOGIN_PATH,
        )
    _openapi_with_contract(app, token=bool(settings.api_token))
    return app
