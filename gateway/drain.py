"""Ending open streams at shutdown with an error event instead of a silent cut.

On SIGTERM uvicorn stops accepting, lets requests run for the grace period, then
cancels whatever is left: a stream still open is cut mid-body, which a client
cannot tell from a network fault. ``StreamDrain`` knows the tasks that are
streaming now; at the end of the grace period the server calls ``stop()``, which
cancels each of them with its own message. ``guard`` (one layer around the
relay's body iterator) tells that cancellation from any other, sends one
``shutting_down`` SSE error event and ends the stream normally, so the connection
closes after a complete chunked body and the request is counted as a 503.
A client that leaves, or any other cancellation, passes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from gateway.context import RequestContext
from gateway.errors import GatewayError, sse_error_event

log = logging.getLogger("taxgate.drain")

STOP_MESSAGE = "taxgate: shutdown grace period over"


class ShuttingDown(GatewayError):
    status = 503
    type = "server_error"
    code = "shutting_down"


class StreamDrain:
    """The streams being sent now. One per app; ``stop`` is called once, by the server."""

    def __init__(self) -> None:
        self._streams: set[asyncio.Task] = set()
        self.stopping = False

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def stop(self) -> int:
        """Cancel every open stream's task (each then ends with ``shutting_down``)."""
        self.stopping = True
        for task in self._streams:
            task.cancel(STOP_MESSAGE)
        return len(self._streams)

    async def guard(self, body: AsyncIterator[bytes], ctx: RequestContext
                    ) -> AsyncIterator[bytes]:
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            if self.stopping:
                raise asyncio.CancelledError(STOP_MESSAGE)  # opened during the last moment
            async for data in body:
                yield data
        except asyncio.CancelledError as exc:
            if not self.stopping or STOP_MESSAGE not in exc.args:
                raise
            # Ours: the cancel was delivered and is handled here, so the event can be sent.
            task.uncancel()
            error = ShuttingDown("the gateway is shutting down; the stream was ended "
                                 "before it was complete: retry the request")
            ctx.status = error.status
            log.warning("request %s: stream ended at shutdown", ctx.request_id)
            yield sse_error_event(error)
        finally:
            self._streams.discard(task)
            await body.aclose()
