"""The raw stream relay: upstream SSE events to the client untouched, when no output
monitor applies. It is the hot path, so it does little per event: it splits the reads
into complete events (sent as received), checks that each is JSON (garbage ends the
stream with an error event instead of reaching the client), counts text-carrying events
with one regex, reads only the ``usage`` event, and checks that the stream ended with
``[DONE]`` (a stream cut short ends with an SSE error event, never a silent 200).
Each endpoint (``gateway.endpoints``) gives its ``RawStream``: a Responses API stream
ends with ``response.completed`` instead, and a fault ends it with that API's typed
``error`` event. ``gateway.monitored_relay`` is the relay that applies output monitors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import orjson

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, error_event
from gateway.recorder import StreamRecorder
from gateway.sse import SSEParser
from gateway.upstream import UpstreamCall

log = logging.getLogger("taxgate.relay")

# A field that carries text a client reads, non-empty; any JSON spacing.
_TEXT_FIELD = re.compile(rb'"(?:content|text|reasoning_content|reasoning|arguments|refusal|delta)"\s*:\s*"(?!")')
_USAGE = re.compile(rb'"usage"\s*:\s*(?!null)')


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


class _EventSplitter:
    """Complete SSE events of a stream as ``(raw bytes, data)``. vLLM writes each event
    as one ``data:`` line and a blank line (LF), which is split here with two bytes
    methods; any other framing (CRLF, several fields) goes through the full SSEParser."""

    def __init__(self) -> None:
        self._rest = b""
        self._parser: SSEParser | None = None

    def feed(self, read: bytes) -> list[tuple[bytes, bytes]]:
        if self._parser is None and b"\r" not in read:
            buffer = self._rest + read
            end = buffer.rfind(b"\n\n")
            if end < 0:
                self._rest = buffer
                return []
            self._rest = buffer[end + 2 :]
            events = []
            for block in buffer[:end].split(b"\n\n"):
                if block.startswith(b"data: ") and b"\n" not in block:
                    events.append((block + b"\n\n", block[6:]))
                elif block.strip():
                    events += [(e.raw, e.data) for e in SSEParser().feed(block + b"\n\n")]
            return events
        if self._parser is None:
            self._parser = SSEParser()
            read, self._rest = self._rest + read, b""
        return [(e.raw, e.data) for e in self._parser.feed(read)]

    def flush(self) -> list[tuple[bytes, bytes]]:
        if self._parser is None:
            self._parser = SSEParser()
            self._parser.feed(self._rest)
        return [(e.raw, e.data) for e in self._parser.flush()]


def _is_json(data: bytes) -> bool:
    if data == b"[DONE]":
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def midstream_error(exc: Exception, url: str, idle_s: float) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream {url} sent nothing for {idle_s:g} s mid-stream")
    return UpstreamError(f"upstream {url} broke the stream: {type(exc).__name__}")


def end_of_stream_error(
    rec: StreamRecorder, error: GatewayError, kind: str, encode: Callable[[GatewayError], bytes] = error_event
) -> bytes:
    """Count, log and encode (``error_event``: chat's event unless ``encode`` numbers it
    for the Responses API) a fault that ends a stream already started."""
    rec.upstream_error(kind)
    rec.ctx.status = error.status
    log.warning("request %s: %s", rec.ctx.request_id, error.message)
    return encode(error)


def next_sequence(data: bytes) -> int:
    """One past the ``sequence_number`` of a Responses event's data (0 without one)."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    sequence = event.get("sequence_number") if isinstance(event, dict) else None
    return sequence + 1 if isinstance(sequence, int) else 0


@dataclass(frozen=True, slots=True)
class RawStream:
    """What differs between the routes' raw streams: the markers of a complete stream
    (the first one is named when it is missing), and the encoder of the event that ends a
    failed one, given the data of the last event the client was sent."""

    ends: tuple[bytes, ...]
    error_encoder: Callable[[bytes], Callable[[GatewayError], bytes]]


def _after_body(
    rest: list[tuple[bytes, bytes]],
    done: bool,
    tail: bytes,
    last: bytes,
    usage_read: bytes,
    rec: StreamRecorder,
    url: str,
    stream: RawStream,
) -> list[bytes]:
    """What ``relay_raw`` sends once the upstream's body ended: an event left without its
    blank line, and the error event of a stream that never reached its end marker."""
    out = []
    if rest and all(_is_json(data) for _, data in rest):
        tail_bytes = b"".join(raw for raw, _ in rest)
        done = done or any(end in tail + tail_bytes for end in stream.ends)
        tail = (tail + tail_bytes)[-max(len(end) for end in stream.ends) :]
        last = rest[-1][1]
        out.append(tail_bytes)
    if usage_read:
        rec.usage(usage_from(usage_read))
    if not done:
        # A blank line first ends any partial event the upstream left, so the client's
        # parser reads the error event as an event of its own.
        out.append(
            _event_break(tail)
            + end_of_stream_error(
                rec,
                UpstreamError(
                    f"upstream {url} ended the stream without {stream.ends[0].decode().removeprefix('event: ')}"
                ),
                "protocol",
                stream.error_encoder(last),
            )
        )
    return out


async def relay_raw(call: UpstreamCall, rec: StreamRecorder, idle_s: float, stream: RawStream) -> AsyncIterator[bytes]:
    ends = stream.ends
    done = False
    longest = max(len(end) for end in ends)
    tail = b""  # the end of the previous read: the end marker may straddle two reads
    last = b""  # the data of the last event sent (a Responses error event numbers after it)
    usage_read = b""
    parser = _EventSplitter()
    try:
        async for read in call.response.aiter_raw():
            rec.read()
            # Complete events only, as received: each must be JSON (or [DONE]); orjson
            # checks a token's event in about a microsecond, and garbage never reaches a
            # client looking like an event.
            events = parser.feed(read)
            chunk = b"".join(raw for raw, _ in events)
            bad = next((at for at, (_, data) in enumerate(events) if not _is_json(data)), -1)
            if bad >= 0:
                good = b"".join(raw for raw, _ in events[:bad])
                if good:
                    last = events[bad - 1][1]
                    yield good
                yield _event_break(good or tail) + end_of_stream_error(
                    rec,
                    UpstreamError(f"upstream {call.replica.url} sent an event that is not JSON"),
                    "protocol",
                    stream.error_encoder(last),
                )
                return
            if not chunk:
                continue
            last = events[-1][1]
            if not done:
                window = tail + chunk
                done = any(end in window for end in ends)
                tail = window[-longest:]
            if b'"usage"' in chunk:
                usage_read = chunk  # the usage event and [DONE] may arrive in different reads
            yield chunk
            rec.sent(count_text_events(chunk))
            if done and not rec.ctx.delivered:
                # Recorded now: the client may close before the upstream's body ends.
                if usage_read:
                    rec.usage(usage_from(usage_read))
                    usage_read = b""
                rec.delivered()
        rec.upstream_done()
        for data in _after_body(parser.flush(), done, tail, last, usage_read, rec, call.replica.url, stream):
            yield data
    except httpx.HTTPError as exc:
        yield _event_break(tail) + end_of_stream_error(
            rec, midstream_error(exc, call.replica.url, idle_s), "midstream", stream.error_encoder(last)
        )
    finally:
        rec.close()
        await call.aclose()
