"""Request ids: every request gets one, every response carries it.

``RequestId`` is a pure-ASGI middleware. It takes the client's ``x-request-id`` when it
is printable ASCII of at most 128 characters (the id is forwarded upstream and written
to logs and the audit trail, so nothing else is let in) and makes one otherwise. The
handlers read it from ``request.state.request_id`` (``scope["state"]``). The response
gets it as a header on ``http.response.start``; body messages pass through untouched
(the wrapper is a plain function, not a coroutine, so a streamed token pays one type
check and no extra await).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_VALID = re.compile(rb"[\x21-\x7e]{1,128}")


def given_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's ``x-request-id`` (the first one), when it is one we can pass on."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if _VALID.fullmatch(value) else None
    return None


class RequestId:
    def __init__(self, app: ASGIApp, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.app = app
        self.new_id = new_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = given_id(scope["headers"]) or self.new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (HEADER, request_id.encode("ascii"))

        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                # A new list: the response's own header list is left as it is.
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        await self.app(scope, receive, send_with_id)
