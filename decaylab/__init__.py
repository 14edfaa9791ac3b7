"""decaylab's Python client: submit runs, follow them, read their analysis as DataFrames.

``decaylab.Client`` talks to the API over HTTP; the ``decaylab`` command line is built on it."""

from decaylab.client import (
    ApiError,
    Client,
    Conflict,
    DecaylabError,
    Event,
    Figure,
    InvalidRequest,
    NotFound,
    Run,
    Sweep,
    Unauthorized,
)

__all__ = [
    "ApiError",
    "Client",
    "Conflict",
    "DecaylabError",
    "Event",
    "Figure",
    "InvalidRequest",
    "NotFound",
    "Run",
    "Sweep",
    "Unauthorized",
]
