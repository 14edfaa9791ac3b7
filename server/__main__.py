"""``python -m server``: serve the API with uvicorn on DECAYLAB_HOST:DECAYLAB_PORT."""

import uvicorn

from server.app import create_app
from server.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
