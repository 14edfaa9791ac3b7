"""ASGI middleware: request body size, cross-origin writes, and an optional bearer token."""

import hmac
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.responses import JSONAnswer

# Open without a token: container health checks and load balancers probe it.
OPEN_PATHS = frozenset({"/health"})
# The browser UI keeps the token in this cookie (HttpOnly, SameSite=Strict; server/api/pages):
# a browser cannot add an Authorization header to a page or an <img> request.
TOKEN_COOKIE = "decaylab_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(headers: Headers) -> bool | None:
    """Whether the request's Origin is this server (its Host); None without an Origin header.

    Browsers send Origin with every POST and DELETE; only the host and port are compared, so a
    TLS-terminating proxy that passes the Host header on still matches."""
    origin = headers.get("origin")
    if origin is None:
        return None
    return origin != "null" and urlsplit(origin).netloc == headers.get("host", "")


class SameOriginWrites:
    """403 for a write (POST, DELETE, …) that a page on another origin made the browser send.

    With no CORS the only cross-origin writes a browser sends are forms and no-cors fetches, that
    is cross-site request forgery, e.g. a web page submitting runs to a decaylab on localhost.
    Clients that are not browsers send no Origin and pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            if same_origin(headers) is False:
                detail = f"cross-origin {scope['method']} refused (Origin: {headers['origin']})"
                await JSONAnswer({"detail": detail}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def token_matches(given: str, token: bytes) -> bool:
    """Whether ``given`` (header or form text) is the token, spaces around it aside."""
    # Headers are latin-1 text: encoding back gives the bytes the client sent. A form's text
    # outside latin-1 cannot be the token (settings hold it as header-safe text).
    try:
        given_bytes = given.strip().encode("latin-1")
    except UnicodeEncodeError:
        return False
    # Constant time: the comparison does not tell how much of a guess was right.
    return hmac.compare_digest(given_bytes, token)


class BearerAuth:
    """Answers 401 unless ``Authorization: Bearer <token>`` or the UI's cookie carries the token.

    An ASGI middleware rather than a dependency so that it also guards /docs, /openapi.json and
    unknown paths, and refuses before a request body is read. A browser asking for a page
    without the token is sent to ``login_path`` instead. The cookie opens a write only together
    with an Origin header naming this server: SameSite=Strict already keeps it off cross-site
    requests, this also refuses sibling origins on the same site."""

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        open_paths: frozenset[str] = OPEN_PATHS,
        open_prefixes: tuple[str, ...] = (),
        login_path: str | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode()
        self._open_paths = open_paths
        self._open_prefixes = open_prefixes
        self._login_path = login_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        accept = Headers(scope=scope).get("accept", "")
        if self._login_path and scope["method"] == "GET" and "text/html" in accept:
            query = scope["query_string"].decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            response = RedirectResponse(f"{self._login_path}?next={quote(target)}", status_code=303)
        else:
            response = JSONAnswer(
                {"detail": "missing or wrong bearer token (send Authorization: Bearer <token>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)

    def _open(self, path: str) -> bool:
        return path in self._open_paths or path.startswith(self._open_prefixes)

    def _matches(self, given: str) -> bool:
        return token_matches(given, self._token)

    def _authorized(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._matches(credentials):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)
        if cookie is None or not self._matches(cookie):
            return False
        return scope["method"] in SAFE_METHODS or same_origin(headers) is True


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
