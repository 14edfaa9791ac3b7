"""``python -m server``: serve the API with uvicorn on DECAYLAB_HOST:DECAYLAB_PORT."""

import asyncio
import gc
import sys
from types import FrameType

import uvicorn

from server.api.app import create_app
from server.api.events import Broadcaster
from server.core.runfiles import ArtifactStoreError
from server.core.settings import get_settings

# A last resort: streams end at once on shutdown (Server.handle_exit), so this only bounds a
# request that hangs for another reason.
SHUTDOWN_GRACE_SECONDS = 10


class Server(uvicorn.Server):
    """uvicorn's server, which also ends the open event streams when told to stop: an event
    stream lasts until its run ends, and uvicorn would wait for every one before it stops."""

    def __init__(self, config: uvicorn.Config, events: Broadcaster) -> None:
        super().__init__(config)
        self.events = events
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.loop is not None:
            self.events.stop(self.loop)


def main() -> None:
    settings = get_settings()
    try:
        app = create_app(settings)
    except ArtifactStoreError as exc:
        sys.exit(f"server: {exc}")
    # What is built by now (modules, routes, schemas, pools: ~190,000 objects) lives as long as
    # the process. Frozen out of the collector, a full collection walks only what requests
    # leave behind (~20,000), and the load test's p95 and p99 drop by a fifth (benchmarks.md).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    Server(config, app.state.events).run()


if __name__ == "__main__":
    main()
