"""The API's JSON answers end with a newline, so a shell prompt after `curl` starts on a line of
its own.

``FinalNewline`` adds it to every JSON answer of the app (routes, error handlers) as the
innermost middleware: FastAPI keeps serialising response models straight to bytes (its fast
path, which a custom default response class would turn off: GET /runs?limit=100 took 40% longer
that way), and routes added later get it too. The middlewares outside it (a 401 from BearerAuth,
a 413 from BodyLimit) answer with ``JSONAnswer``, which ends with the newline itself."""

from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_BODY = (204, 304)


class JSONAnswer(JSONResponse):
    """``application/json`` with a final newline (still one JSON document)."""

    def render(self, content: Any) -> bytes:
        return super().render(content) + b"\n"


class FinalNewline:
    """ASGI middleware: a newline after the body of every ``application/json`` answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        json_body = False

        async def send_with_newline(message: Message) -> None:
            nonlocal json_body
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                media = headers.get("content-type", "").split(";")[0].strip()
                json_body = media == "application/json" and message["status"] not in NO_BODY
                if json_body and "content-length" in headers:
                    headers["content-length"] = str(int(headers["content-length"]) + 1)
                    message = {**message, "headers": headers.raw}
            elif message["type"] == "http.response.body" and json_body:
                if not message.get("more_body", False):
                    message = {**message, "body": message.get("body", b"") + b"\n"}
            await send(message)

        await self.app(scope, receive, send_with_newline)
