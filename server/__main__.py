"""``python -m server``: serve the API with uvicorn on DECAYLAB_HOST:DECAYLAB_PORT."""

import sys

import uvicorn

from server.api.app import create_app
from server.core.runfiles import ArtifactStoreError
from server.core.settings import get_settings

SHUTDOWN_GRACE_SECONDS = 10


def main() -> None:
    settings = get_settings()
    try:
        app = create_app(settings)
    except ArtifactStoreError as exc:
        sys.exit(f"server: {exc}")
    # An event stream (GET /runs/{id}/events) lasts until its run ends: without a limit,
    # shutting down would wait for every one. After it, uvicorn closes them (clients reconnect).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


if __name__ == "__main__":
    main()
