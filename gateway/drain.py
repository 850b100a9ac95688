"""Ending what is still open at shutdown with a defined answer instead of a silent cut.

On SIGTERM uvicorn stops accepting, lets requests run for the grace period, then
cancels whatever is left: a stream is cut mid-body and a request still waiting on
the upstream loses its connection with no answer, which a client cannot tell from a
network fault. ``StreamDrain`` knows the requests being served now; at the end of
the grace period the server calls ``stop()``, which cancels each with its own
message, so the cancellation can be told from any other (a client leaving, uvicorn's
own cancel) and answered:

- a stream (``guard``, one layer around the relay's body iterator) sends one
  ``shutting_down`` SSE error event and ends normally, so the connection closes
  after a complete chunked body;
- a request with no response yet (``DrainMiddleware``, pure ASGI: it wraps neither
  ``receive`` nor ``send``) answers 503 ``shutting_down`` in the OpenAI shape.

Each is counted as a 503. Which of the two a request is, is known through a context
variable: the stream runs in a child task that inherits the request's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import RequestContext
from gateway.errors import GatewayError, error_event, error_response

log = logging.getLogger("taxgate.drain")

STOP_MESSAGE = "taxgate: shutdown grace period over"


class ShuttingDown(GatewayError):
    status = 503
    type = "server_error"
    code = "shutting_down"

    def headers(self) -> dict[str, str]:
        # The server is going away: the client should not reuse this connection.
        return {**super().headers(), "connection": "close"}


def _ours(exc: asyncio.CancelledError) -> bool:
    return STOP_MESSAGE in exc.args


class _Served:
    """One request being served: its task and, once it streams, the stream's task."""

    __slots__ = ("task", "stream")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.stream: asyncio.Task | None = None


class StreamDrain:
    """The requests being served now. One per app; ``stop`` is called once, by the server."""

    def __init__(self) -> None:
        self._served: set[_Served] = set()
        self._streams: set[asyncio.Task] = set()  # streams whose request is not tracked
        self._current: contextvars.ContextVar[_Served | None] = contextvars.ContextVar("taxgate_served", default=None)
        self.stopping = False

    @property
    def open_requests(self) -> int:
        return len(self._served) + len(self._streams)

    def stop(self) -> int:
        """Cancel every open request (each then ends with ``shutting_down``); how many."""
        self.stopping = True
        tasks = [s.stream or s.task for s in self._served] + list(self._streams)
        for task in tasks:
            task.cancel(STOP_MESSAGE)
        return len(tasks)

    async def guard(self, body: AsyncIterator[bytes], ctx: RequestContext) -> AsyncIterator[bytes]:
        task = asyncio.current_task()
        assert task is not None
        served = self._current.get()
        if served is not None:
            served.stream = task  # stop() now cancels the stream, not the request around it
        else:
            self._streams.add(task)
        try:
            if self.stopping:
                raise asyncio.CancelledError(STOP_MESSAGE)  # opened during the last moment
            async for data in body:
                yield data
        except asyncio.CancelledError as exc:
            if not (self.stopping and _ours(exc)):
                raise
            # Ours: the cancel was delivered and is handled here, so the event can be sent.
            task.uncancel()
            error = ShuttingDown(
                "the gateway is shutting down; the stream was ended before it was complete: retry the request"
            )
            ctx.status = error.status
            log.warning("request %s: stream ended at shutdown", ctx.request_id)
            yield error_event(error)
        finally:
            if served is not None:
                served.stream = None
            self._streams.discard(task)
            await body.aclose()


class DrainMiddleware:
    """Tracks each HTTP request for ``StreamDrain.stop`` and answers 503 ``shutting_down``
    when a request with no response yet is stopped. ``on_stopped(path)`` counts it."""

    def __init__(self, app: ASGIApp, drain: StreamDrain, on_stopped: Callable[[str], None]) -> None:
        self.app = app
        self.drain = drain
        self.on_stopped = on_stopped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        task = asyncio.current_task()
        assert task is not None
        served = _Served(task)
        token = drain._current.set(served)
        drain._served.add(served)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError as exc:
            if not (drain.stopping and _ours(exc)):
                raise
            task.uncancel()
            await self._answer(scope, receive, send)
        finally:
            drain._served.discard(served)
            drain._current.reset(token)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.on_stopped(scope["path"])
        error = ShuttingDown("the gateway is shutting down; the request was not completed: retry it", retry_after_s=1)
        log.warning("%s %s: ended at shutdown before an answer", scope["method"], scope["path"])
        try:
            await error_response(error)(scope, receive, send)
        except RuntimeError:
            # A response had started after all (the stop landed in the instant between a
            # response's start and its stream): nothing more can be said on it.
            pass
