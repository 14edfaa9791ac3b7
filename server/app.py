"""The FastAPI application factory."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from server import __doc__ as package_doc
from server.db import Database
from server.errors import DomainError
from server.figures.render import Renderer
from server.middleware import OPEN_PATHS, BearerAuth, BodyLimit
from server.responses import JSONAnswer
from server.routers import compare, health, runs
from server.settings import Settings, get_settings

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


async def _domain_error(_request: Request, exc: Exception) -> JSONAnswer:
    assert isinstance(exc, DomainError)
    return JSONAnswer({"detail": str(exc)}, status_code=exc.status_code)


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


async def _http_error(request: Request, exc: Exception) -> JSONAnswer:
    """FastAPI's HTTPException answer, with a final newline, and a 405's ``Allow`` listing
    the methods of every route on the path (Starlette names only the first route's)."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONAnswer({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


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


async def _validation_error(_request: Request, exc: Exception) -> JSONAnswer:
    assert isinstance(exc, RequestValidationError)
    detail = jsonable_encoder(_json_safe(exc.errors()))
    return JSONAnswer({"detail": detail}, status_code=422)


def _declare_bearer(app: FastAPI) -> None:
    """OpenAPI: every operation needs the bearer token except /health."""
    schema = app.openapi()
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    schema["security"] = [{"bearer": []}]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                operation["security"] = []
            else:
                operation["responses"]["401"] = {
                    "description": "Missing or wrong bearer token (DECAYLAB_API_TOKEN)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                    },
                }


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
    database = Database(settings.database_url)
    database.upgrade()
    renderer = Renderer()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
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
        default_response_class=JSONAnswer,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.renderer = renderer
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (runs, compare, health):
        app.include_router(module.router)
    _serve_docs(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Added last, so outermost: a request without the token is refused before anything else.
    if settings.api_token:
        app.add_middleware(BearerAuth, token=settings.api_token)
        _declare_bearer(app)
    return app
