"""FastAPI dependencies: settings, the database, per-request sessions and admitted specs."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.store import limits
from server.store.db import Database

# The light dependencies are async: FastAPI runs a plain ``def`` in its thread pool, a hop that
# costs more than reading an attribute (and under load, a wait for the GIL besides).

T = TypeVar("T")


async def app_settings(request: Request) -> Settings:
    """The settings the app was made with (create_app), not the environment's."""
    return request.app.state.settings


def database_of(request: Request) -> Database:
    return request.app.state.database


@asynccontextmanager
async def _closing(session: Session) -> AsyncIterator[Session]:
    """A request's session. Opening one does not block (it connects at its first query, in the
    route's thread); closing it may (a rollback, a commit's aftermath), so that runs in the
    thread pool."""
    try:
        yield session
    finally:
        await run_in_threadpool(session.close)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A read session: a consistent snapshot for the whole request."""
    async with _closing(database_of(request).reader()) as session:
        yield session


async def get_write_session(request: Request) -> AsyncIterator[Session]:
    """A write session (SQLite: BEGIN IMMEDIATE); the route commits before it answers."""
    async with _closing(database_of(request).writer()) as session:
        yield session


class InOneTrip:
    """A route's blocking part, ``work(session)``, in a session opened, used and closed in one
    call to the thread pool. The views (server/views/registry.py) and the routes on the hot
    path (/health, the run reads, POST /runs) are async and use this: a plain ``def`` route
    with a session costs three hops (the route, its response's validation, the session's
    close); the others keep that simpler form."""

    def __init__(self, open_session: Callable[[], Session]) -> None:
        self.open_session = open_session

    async def __call__(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.open_session() as session:
                return work(session)

        return await run_in_threadpool(run)


async def read_trip(request: Request) -> InOneTrip:
    """Work in a read session (one snapshot)."""
    return InOneTrip(database_of(request).reader)


async def write_trip(request: Request) -> InOneTrip:
    """Work in a write session (SQLite: BEGIN IMMEDIATE); the work commits."""
    return InOneTrip(database_of(request).writer)


SettingsDep = Annotated[Settings, Depends(app_settings)]
ReadTrip = Annotated[InOneTrip, Depends(read_trip)]
WriteTrip = Annotated[InOneTrip, Depends(write_trip)]


async def admitted_spec(spec: RunSpec, settings: SettingsDep) -> RunSpec:
    """The posted spec, or 422 naming each resource limit it exceeds (nothing is stored)."""
    errors = limits.violations(spec, settings)
    if errors:
        raise RequestValidationError(errors)
    return spec


SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]
AdmittedSpec = Annotated[RunSpec, Depends(admitted_spec)]
