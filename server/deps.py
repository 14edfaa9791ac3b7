"""FastAPI dependencies: settings, the database and per-request sessions."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.db import Database
from server.settings import Settings


def get_settings(request: Request) -> Settings:
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]
