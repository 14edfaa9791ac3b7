"""ASGI middleware: request body size, and an optional bearer token in front of the API."""

import hmac

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.responses import JSONAnswer

# Open without a token: container health checks and load balancers probe it.
OPEN_PATHS = frozenset({"/health"})


class BearerAuth:
    """Answers 401 unless ``Authorization: Bearer <token>`` carries the token.

    An ASGI middleware rather than a dependency so that it also guards /docs, /openapi.json and
    unknown paths, and refuses before a request body is read."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = JSONAnswer(
            {"detail": "missing or wrong bearer token (send Authorization: Bearer <token>)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        # Headers are latin-1 text: encoding back gives the bytes the client sent.
        given = credentials.strip().encode("latin-1")
        # Constant time: the comparison does not tell how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._token)


class BodyLimit:
    """413 for a request body over ``limit`` bytes, with a JSON ``detail`` like every error.

    An announced body (Content-Length) is refused before it is read; a chunked one as soon as
    the bytes read pass the limit, so it is never buffered whole. Starlette's own limit answers
    in plain text when the length is announced, hence this one."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.detail = f"request body larger than {limit:,} bytes (DECAYLAB_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await JSONAnswer({"detail": self.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # Raised inside the route's body read: FastAPI's handler turns it into the 413.
                raise HTTPException(413, self.detail)
            return message

        await self.app(scope, limited, send)
