"""Client read timeouts: a request body that does not arrive in time is a 408.

uvicorn bounds only the idle gap between two keep-alive requests. A client that
declares ``Content-Length: 1000`` and sends 10 bytes would otherwise hold its
connection, its ASGI task and (for completions) an in-flight slot for as long as
it likes. ``BodyTimeout`` is a pure-ASGI middleware: it wraps ``receive`` only
until the body is complete (``send`` is never wrapped, so the response and the
stream pay nothing), and raises ``RequestTimeout`` out of the ``receive`` call
that waits past the deadline. The handler reading the body sees a ``GatewayError``
and answers it as every other one: 408 in the OpenAI shape, counted, with
``Connection: close`` because the rest of the body may still be on the wire.

Headers are bounded one level lower, in the HTTP protocol (``gateway.http_server``),
since no ASGI request exists before they are complete.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def headers(self) -> dict[str, str]:
        # The unread part of the request would be parsed as the next request.
        return {**super().headers(), "connection": "close"}


class BodyTimeout:
    """Bound the time from a request's start (headers complete) to its last body byte."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def bounded_receive() -> Message:
            nonlocal body_done
            if body_done:
                # Later receives wait for the disconnect while a response is produced:
                # that wait is the response's business, not the body's.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                body_done = True
                raise RequestTimeout(
                    f"the request body did not arrive within {self.timeout_s:g} s (timeouts.client_body_s)"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, bounded_receive, send)
