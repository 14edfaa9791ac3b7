"""ETag and 304 for the views, so that polling an unchanged view costs no transfer.

A pure ASGI middleware: a GET answered 200 with a view's media type is buffered, tagged with a
strong ETag (a hash of its content type and body) and answered 304 without a body when the
request's ``If-None-Match`` names that tag. Other answers (the event stream, snapshot files,
errors) and answers tagged already (the analysis views: server/views/registry.py tags them
from what they depend on, without computing them) pass through untouched."""

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The media types of the views (JSON, CSV, PNG, the report page); not text/event-stream.
TAGGED_TYPES = frozenset({"application/json", "text/csv", "image/png", "text/html"})


def etag(content_type: str, body: bytes) -> str:
    digest = hashlib.blake2b(content_type.encode() + b"\0" + body, digest_size=16)
    return f'"{digest.hexdigest()}"'


def matches(if_none_match: str, tag: str) -> bool:
    """RFC 9110: weak comparison, so ``W/"x"`` matches ``"x"``; ``*`` matches any tag."""
    candidates = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return "*" in candidates or tag in candidates


class ETagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if_none_match = Headers(scope=scope).get("if-none-match")
        start: Message | None = None
        body = bytearray()

        async def tagging_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                media_type = headers.get("content-type", "").partition(";")[0].strip()
                # A view's answer comes tagged (and its 304 answered) by the view registry,
                # which knows its tag before computing it.
                tagged = "etag" in headers
                if message["status"] == 200 and media_type in TAGGED_TYPES and not tagged:
                    start = message  # held back until the whole body is there
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await send_tagged(start, bytes(body))
                return
            await send(message)

        async def send_tagged(start: Message, body: bytes) -> None:
            headers = MutableHeaders(raw=list(start["headers"]))
            tag = etag(headers["content-type"], body)
            headers["etag"] = tag
            if if_none_match is not None and matches(if_none_match, tag):
                # 304: the same headers but no body (RFC 9110 keeps ETag, Vary, Content-Type).
                del headers["content-length"]
                await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
                await send({"type": "http.response.body", "body": b""})
                return
            await send(start | {"headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, tagging_send)
