"""The FastAPI application factory."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from server import __doc__ as package_doc
from server import pages
from server.db import Database
from server.errors import DomainError
from server.etag import ETagMiddleware
from server.events import Broadcaster
from server.figures.render import Renderer
from server.middleware import OPEN_PATHS, BearerAuth, BodyLimit, SameOriginWrites
from server.routers import compare, events, health, mechanism, runs, sweeps
from server.settings import Settings, get_settings

DESCRIPTION = """How does weight decay change the way each layer's weights move during training?

Submit a training job with `POST /runs`; a worker (`python -m worker`) trains it and records,
after every epoch, the share of each layer's weights that stayed constant (changed by at most
`tol` times their size). Read the results per layer, averaged over all layers or the last two,
and compare runs with `GET /compare`.
"""


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)


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


def _declare_bearer(app: FastAPI) -> None:
    """OpenAPI: every operation needs the bearer token except /health."""
    schema = app.openapi()
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    schema["security"] = [{"bearer": []}]
    for path in OPEN_PATHS:
        for operation in schema["paths"].get(path, {}).values():
            operation["security"] = []


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app on ``settings`` (default: the environment); brings the schema to head."""
    settings = settings or get_settings()
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
    )
    app.state.settings = settings
    app.state.database = database
    app.state.renderer = renderer
    app.state.events = broadcaster
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    for module in (runs, events, compare, mechanism, health, sweeps):
        app.include_router(module.router)
    pages.install(app)
    app.add_middleware(ETagMiddleware)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SameOriginWrites)
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
        _declare_bearer(app)
    return app
