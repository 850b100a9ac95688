"""The raw stream relay: upstream SSE bytes to the client untouched, when no output
monitor applies. It is the hot path, so it parses nothing it need not: it times each
read, counts text-carrying events with one regex, parses only the ``usage`` event,
and checks that the stream ended with ``[DONE]`` (a stream cut short ends with an SSE
error event, never a silent 200). ``MonitoredRelay`` is the other relay.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import orjson

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, sse_error_event
from gateway.recorder import StreamRecorder
from gateway.upstream import UpstreamCall

log = logging.getLogger("taxgate.relay")

# A field that carries text a client reads, non-empty; any JSON spacing.
_TEXT_FIELD = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning|arguments|refusal|delta)"\s*:\s*"(?!")')
_USAGE = re.compile(rb'"usage"\s*:\s*(?!null)')
_DONE = b"data: [DONE]"


def _event_break(tail: bytes) -> bytes:
    """A blank line, unless the bytes forwarded last already ended an event."""
    return b"" if tail.endswith(b"\n\n") else b"\n\n"


def count_text_events(data: bytes) -> int:
    """Text-carrying fields in raw SSE bytes, without parsing JSON."""
    return len(_TEXT_FIELD.findall(data))


def usage_from(data: bytes) -> object | None:
    """The ``usage`` object of the last event in ``data`` that carries one."""
    for line in reversed(data.split(b"\n")):
        if line.startswith(b"data:") and _USAGE.search(line):
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None
            if not isinstance(event, dict):
                return None
            # A Responses stream reports it in its final event's Response object.
            inner = event.get("response")
            return event.get("usage", inner.get("usage") if isinstance(inner, dict) else None)
    return None


# A data line whose value cannot begin a JSON object ("{") or [DONE] ("["): one regex
# per read, no parsing; a cheap guard that garbage never reaches a client as an event.
_BAD_DATA = re.compile(rb"(?:^|\n)data:(?! ?[{\[])")


def _not_json_event(chunk: bytes, line_start: bool) -> int:
    """Where the first data line that is not JSON starts in ``chunk``; -1 when none."""
    match = _BAD_DATA.search(chunk)
    if match is not None and match.start() == 0 and chunk.startswith(b"data") and not line_start:
        match = _BAD_DATA.search(chunk, 1)  # the read began mid-line: not a data line
    if match is None:
        return -1
    return match.start() + (chunk[match.start():match.start() + 1] == b"\n")


def midstream_error(exc: Exception, url: str, idle_s: float) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream {url} sent nothing for {idle_s:g} s mid-stream")
    return UpstreamError(f"upstream {url} broke the stream: {type(exc).__name__}")


def end_of_stream_error(rec: StreamRecorder, error: GatewayError, kind: str) -> bytes:
    """Count, log and encode a fault that ends a stream already started."""
    rec.upstream_error(kind)
    rec.ctx.status = error.status
    log.warning("request %s: %s", rec.ctx.request_id, error.message)
    return sse_error_event(error)


# The events that end a Responses API stream (it sends no [DONE]).
RESPONSES_ENDS = (b"event: response.completed", b"event: response.incomplete",
                  b"event: response.failed")


async def relay_raw(call: UpstreamCall, rec: StreamRecorder, idle_s: float,
                    ends: tuple[bytes, ...] = (_DONE,)) -> AsyncIterator[bytes]:
    """``ends``: the markers of a complete stream (``[DONE]``, or RESPONSES_ENDS)."""
    done = False
    longest = max(len(end) for end in ends)
    tail = b""  # the end of the previous read: the end marker may straddle two reads
    usage_read = b""
    try:
        line_start, carry = True, b""  # a short line begun in the previous read
        async for chunk in call.response.aiter_raw():
            rec.read()
            bad = _not_json_event(carry + chunk, line_start or bool(carry)) - len(carry)
            if bad > -len(carry) - 1:
                # Not the protocol: what came before leaves, then one error event, counted.
                if bad > 0:
                    yield chunk[:bad]
                yield _event_break(chunk[:max(bad, 0)] or tail) + end_of_stream_error(
                    rec, UpstreamError(f"upstream {call.replica.url} sent an event that is "
                                       "not JSON"), "protocol")
                return
            line_end = chunk.rfind(b"\n")
            partial = chunk[line_end + 1:]
            if line_end >= 0 or line_start:
                line_start, carry = len(partial) == 0, partial if len(partial) <= 8 else b""
            else:  # still inside the line the previous read began (if it began it at all)
                line_start = False
                carry = carry + chunk if carry and len(carry) + len(chunk) <= 8 else b""
            if not done:
                window = tail + chunk
                done = any(end in window for end in ends)
                tail = window[-longest:]
            if b'"usage"' in chunk:
                usage_read = chunk  # the usage event and [DONE] may arrive in different reads
            yield chunk
            rec.sent(count_text_events(chunk))
        rec.upstream_done()
        if usage_read:
            rec.usage(usage_from(usage_read))
        if not done:
            # A blank line first ends any partial event the upstream left, so the client's
            # parser reads the error event as an event of its own.
            yield _event_break(tail) + end_of_stream_error(rec, UpstreamError(
                f"upstream {call.replica.url} ended the stream without "
                f"{ends[0].decode().removeprefix('event: ')}"), "protocol")
    except httpx.HTTPError as exc:
        yield _event_break(tail) + end_of_stream_error(
            rec, midstream_error(exc, call.replica.url, idle_s), "midstream")
    finally:
        rec.close()
        await call.aclose()
