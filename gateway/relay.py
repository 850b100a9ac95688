"""Stream relays: upstream SSE bytes in, client SSE bytes out.

``relay_raw`` is the hot path when no output monitor applies: upstream bytes go to
the client untouched; only their arrival is timed. ``MonitoredRelay`` parses the
events, passes their text through output-monitor windows and re-encodes only what
it had to change.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import httpx
import orjson

from gateway.context import RequestContext
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, sse_error_event
from gateway.upstream import UpstreamCall

log = logging.getLogger("taxgate.relay")


class StreamObserver:
    """Per-request metric children, resolved once so the per-chunk path is one call."""

    __slots__ = ("itl", "upstream_errors", "ctx", "clock")

    def __init__(self, ctx: RequestContext, itl, upstream_errors: Callable[[str], None],
                 clock: Callable[[], float]) -> None:
        self.ctx = ctx
        self.itl = itl
        self.upstream_errors = upstream_errors
        self.clock = clock


def count_text_chunks(route: str, data: bytes) -> int:
    """Content-carrying events in raw SSE bytes, without parsing JSON."""
    key = b'"content":"' if route == "chat" else b'"text":"'
    empty = b'"content":""' if route == "chat" else b'"text":""'
    return data.count(key) - data.count(empty)


def usage_from(data: bytes) -> dict | None:
    """The ``usage`` object of the last event in ``data`` that carries one."""
    index = data.rfind(b"data: {")
    while index >= 0:
        end = data.find(b"\n", index)
        line = data[index + 6: end if end >= 0 else len(data)]
        if b'"usage":{' in line:
            try:
                return orjson.loads(line).get("usage")
            except orjson.JSONDecodeError:
                return None
        index = data.rfind(b"data: {", 0, index)
    return None


def midstream_error(exc: Exception, url: str, idle_s: float) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream {url} sent nothing for {idle_s:g} s mid-stream")
    return UpstreamError(f"upstream {url} broke the stream: {type(exc).__name__}")


async def relay_raw(call: UpstreamCall, obs: StreamObserver, idle_s: float) -> AsyncIterator[bytes]:
    """Forward upstream bytes unchanged, timing each read (TTFT, ITL)."""
    ctx = obs.ctx
    clock = obs.clock
    observe_itl = obs.itl.observe
    route = ctx.route
    last = 0.0
    usage_chunk = b""
    try:
        async for chunk in call.response.aiter_raw():
            now = clock()
            if ctx.upstream_first is None:
                ctx.upstream_first = now
            else:
                observe_itl(now - last)
            last = now
            ctx.completion_tokens += count_text_chunks(route, chunk)
            if b'"usage":{' in chunk:
                usage_chunk = chunk  # the usage event and [DONE] may arrive in different reads
            yield chunk
            if ctx.first_sent is None:
                ctx.first_sent = clock()
        ctx.upstream_last = ctx.last_sent = clock()
        usage = usage_from(usage_chunk) if usage_chunk else None
        if usage:
            ctx.prompt_tokens = usage.get("prompt_tokens") or 0
            ctx.completion_tokens = usage.get("completion_tokens") or ctx.completion_tokens
    except httpx.HTTPError as exc:
        error = midstream_error(exc, call.replica.url, idle_s)
        obs.upstream_errors("midstream")
        ctx.status = error.status
        log.warning("request %s: %s", ctx.request_id, error.message)
        yield sse_error_event(error)
    finally:
        await call.aclose()
