"""FastAPI dependencies: settings, the database, per-request sessions and admitted specs."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.store import limits
from server.store.db import Database

# The light dependencies are async: FastAPI runs a plain ``def`` in its thread pool, a hop that
# costs more than reading an attribute.


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


SettingsDep = Annotated[Settings, Depends(app_settings)]


def admitted_spec(spec: RunSpec, settings: SettingsDep) -> RunSpec:
    """The posted spec, or 422 naming each resource limit it exceeds (nothing is stored)."""
    errors = limits.violations(spec, settings)
    if errors:
        raise RequestValidationError(errors)
    return spec


SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]
AdmittedSpec = Annotated[RunSpec, Depends(admitted_spec)]
