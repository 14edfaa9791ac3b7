"""The browser UI: server-rendered pages under /ui/, their static files, and ``/``."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from server.api.pages import (  # noqa: F401 (they add their pages to the router)
    reproduction_page,
    sweep_pages,
)
from server.api.pages.routes import LOGIN_PATH, STATIC_PATH, router

__all__ = ["LOGIN_PATH", "STATIC_PATH", "install"]


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=Path(__file__).parent / "static"), name="static")
