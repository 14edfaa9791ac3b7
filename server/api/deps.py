"""FastAPI dependencies: settings, the database, per-request sessions and admitted specs."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.store import limits
from server.store.db import Database


def app_settings(request: Request) -> Settings:
    """The settings the app was made with (create_app), not the environment's."""
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_session(request: Request) -> Iterator[Session]:
    """A read session: a consistent snapshot for the whole request."""
    with get_database(request).reader() as session:
        yield session


def get_write_session(request: Request) -> Iterator[Session]:
    """A write session (SQLite: BEGIN IMMEDIATE); the route commits before it answers."""
    with get_database(request).writer() as session:
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
