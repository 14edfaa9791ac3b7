"""The API's JSON answers end with a newline, so a shell prompt after `curl` starts on a line of
its own. The app's default response class, and what its error handlers and middleware send."""

from typing import Any

from fastapi.responses import JSONResponse


class JSONAnswer(JSONResponse):
    """``application/json`` with a final newline (still one JSON document)."""

    def render(self, content: Any) -> bytes:
        return super().render(content) + b"\n"
