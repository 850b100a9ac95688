"""The raw relay: its event splitter at every split offset, its byte scanners, and
``relay_raw`` over a fake upstream response (forwarded as received, faults as an SSE
error event, the recorder fed and the call closed whatever happened)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.context import RequestContext
from gateway.endpoints.chat import CHAT
from gateway.endpoints.responses import RESPONSES
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.recorder import StreamRecorder
from gateway.relay import (
    _EventSplitter,
    _is_json,
    count_text_events,
    end_of_stream_error,
    midstream_error,
    relay_raw,
    usage_from,
)

URL = "http://upstream.test"


def chunk(**delta) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": delta}]}) + b"\n\n"


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
USAGE_EVENT = b"data: " + orjson.dumps({"id": "c", "choices": [], "usage": USAGE}) + b"\n\n"
DONE = b"data: [DONE]\n\n"
# What vLLM writes: a role chunk, three text chunks, a finish chunk, usage, [DONE].
STREAM = (
    chunk(role="assistant")
    + chunk(content="Hel")
    + chunk(content="lo")
    + chunk(content=" you")
    + b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    + USAGE_EVENT
    + DONE
)


# --------------------------------------------------------------------------- splitter

# LF events (the fast path), then a comment, a multi-field event and CRLF framing (the
# full parser, which the splitter switches to at the first CR).
MIXED = (
    b'data: {"a":1}\n\n'
    b": keep-alive\n\n"
    b'event: message\ndata: {"b":2}\n\n'
    b'data: {"c":3}\r\n\r\n'
    b'data: {"d":4}\n\n'
    b"data: [DONE]\n\n"
)
MIXED_EVENTS = [
    (b'data: {"a":1}\n\n', b'{"a":1}'),
    (b'event: message\ndata: {"b":2}\n\n', b'{"b":2}'),
    (b'data: {"c":3}\r\n\r\n', b'{"c":3}'),
    (b'data: {"d":4}\n\n', b'{"d":4}'),
    (b"data: [DONE]\n\n", b"[DONE]"),
]


def split_in_pieces(data: bytes, cuts: list[int]) -> list[tuple[bytes, bytes]]:
    splitter = _EventSplitter()
    events, start = [], 0
    for cut in sorted(cuts) + [len(data)]:
        events += splitter.feed(data[start:cut])
        start = cut
    return events + splitter.flush()


def test_lf_stream_whole():
    events = split_in_pieces(STREAM, [])
    assert b"".join(raw for raw, _ in events) == STREAM
    assert [data for _, data in events][-2:] == [USAGE_EVENT[6:-2], b"[DONE]"]
    assert len(events) == 7


@pytest.mark.parametrize("offset", range(1, len(STREAM)))
def test_lf_stream_split_at_every_offset(offset):
    assert split_in_pieces(STREAM, [offset]) == split_in_pieces(STREAM, [])


@pytest.mark.parametrize("offset", range(0, len(MIXED) + 1))
def test_mixed_framing_split_at_every_offset(offset):
    assert split_in_pieces(MIXED, [offset]) == MIXED_EVENTS


def test_one_byte_at_a_time():
    assert split_in_pieces(MIXED, list(range(1, len(MIXED)))) == MIXED_EVENTS
    assert b"".join(raw for raw, _ in split_in_pieces(STREAM, list(range(1, len(STREAM))))) == STREAM


@given(st.lists(st.integers(min_value=0, max_value=len(MIXED)), max_size=10))
def test_arbitrary_splits(cuts):
    assert split_in_pieces(MIXED, cuts) == MIXED_EVENTS


def test_an_incomplete_event_waits_for_its_blank_line():
    splitter = _EventSplitter()
    assert splitter.feed(b'data: {"a"') == []
    assert splitter.feed(b":1}\n") == []
    assert splitter.feed(b'\ndata: {"b"') == [(b'data: {"a":1}\n\n', b'{"a":1}')]
    # The stream ended without the last blank line: the event still counts.
    assert splitter.flush() == [(b'data: {"b"', b'{"b"')]


def test_flush_of_an_empty_or_finished_stream():
    splitter = _EventSplitter()
    assert splitter.feed(DONE) == [(DONE, b"[DONE]")]
    assert splitter.flush() == []
    assert _EventSplitter().flush() == []


# --------------------------------------------------------------------------- scanners


@pytest.mark.parametrize(
    "data, count",
    [
        (chunk(content="hi"), 1),
        (chunk(content=""), 0),  # an empty text is no token for the client
        (chunk(role="assistant"), 0),
        (b'data: {"choices":[{"delta":{"content" :  "x"}}]}\n\n', 1),
        (chunk(reasoning_content="think"), 1),
        (b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"text":"b"}]}\n\n', 2),
        (b'data: {"type":"response.output_text.delta","delta":"a"}\n\n', 1),
        (b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}\n\n', 1),
        (STREAM, 3),
        (DONE, 0),
    ],
)
def test_count_text_events(data, count):
    assert count_text_events(data) == count


def test_usage_from_the_last_event_that_carries_one():
    first = b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n\n'
    assert usage_from(first + USAGE_EVENT + DONE) == USAGE
    # vLLM writes a chunk without usage as "usage":null (compact JSON): not a usage event.
    assert usage_from(USAGE_EVENT + b'data: {"choices":[],"usage":null}\n\n') == USAGE


def test_usage_from_a_responses_stream():
    usage = {"input_tokens": 4, "output_tokens": 2}
    event = (
        b"event: response.completed\ndata: "
        + orjson.dumps({"type": "response.completed", "response": {"id": "r", "usage": usage}})
        + b"\n\n"
    )
    assert usage_from(event) == usage


@pytest.mark.parametrize(
    "data",
    [
        DONE,
        b'data: {"usage":null}\n\n',
        b'data: {"usage": {"broken\n\n',
        b'data: [{"usage": 1}]\n\n',
        b'data: {"response": "text", "x": {"usage": 1}}\n\n',
        b"",
    ],
)
def test_usage_from_finds_none(data):
    assert usage_from(data) is None


@pytest.mark.parametrize(
    "data, ok",
    [
        (b"[DONE]", True),
        (b'{"a": 1}', True),
        (b"[]", True),
        (b'"s"', True),
        (b"{bro", False),
        (b"", False),
        (b"[DONE] ", False),
        (b"hello", False),
    ],
)
def test_is_json(data, ok):
    assert _is_json(data) is ok


def test_midstream_errors():
    timeout = midstream_error(httpx.ReadTimeout("slow"), URL, 2.5)
    assert isinstance(timeout, UpstreamTimeout) and timeout.status == 504
    assert timeout.message == f"upstream {URL} sent nothing for 2.5 s mid-stream"
    broken = midstream_error(httpx.RemoteProtocolError("peer closed"), URL, 2.5)
    assert type(broken) is UpstreamError and broken.status == 502
    assert broken.message == f"upstream {URL} broke the stream: RemoteProtocolError"


# --------------------------------------------------------------------------- relay_raw


class FakeResponse:
    def __init__(self, reads: list[bytes], error: Exception | None = None) -> None:
        self.reads, self.error, self.taken = reads, error, 0

    async def aiter_raw(self):
        for read in self.reads:
            self.taken += 1
            yield read
        if self.error is not None:
            raise self.error


class FakeCall:
    def __init__(self, response: FakeResponse) -> None:
        self.replica = SimpleNamespace(url=URL)
        self.response = response
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


class Histogram:
    def __init__(self) -> None:
        self.observed: list[float] = []

    def observe(self, value: float) -> None:
        self.observed.append(value)


class Relayed:
    """One relay_raw run: what the client got, what was recorded."""

    def __init__(self, reads, error=None, ends=None) -> None:
        self.call = FakeCall(FakeResponse(reads, error))
        self.ctx = RequestContext("r1", "chat", started=0.0)
        self.kinds: list[str] = []
        self.itl = Histogram()
        ticks = iter(range(1, 10_000))
        self.rec = StreamRecorder(self.ctx, self.itl, self.kinds.append, lambda: float(next(ticks)))
        self.args = (self.call, self.rec, 2.0, (ends or CHAT).raw)
        self.writes: list[bytes] = []

    async def run(self) -> Relayed:
        async for write in relay_raw(*self.args):
            self.writes.append(write)
        return self

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)


def error_event(body: bytes) -> dict:
    last = body.rsplit(b"\n\n", 2)[-2]
    assert last.startswith(b"data: ")
    return orjson.loads(last[6:])["error"]


async def test_a_complete_stream_is_forwarded_as_received():
    reads = [STREAM[:40], STREAM[40:200], STREAM[200:]]
    run = await Relayed(reads).run()
    assert run.body == STREAM
    assert run.kinds == [] and run.ctx.status == 200
    assert (run.ctx.prompt_tokens, run.ctx.completion_tokens) == (7, 3)  # from usage
    assert run.call.closed == 1
    assert run.ctx.upstream_first is not None and run.ctx.upstream_last is not None


@pytest.mark.parametrize("offset", range(1, len(STREAM)))
async def test_any_split_forwards_the_same_bytes_and_finds_done(offset):
    run = await Relayed([STREAM[:offset], STREAM[offset:]]).run()
    assert run.body == STREAM
    assert run.kinds == []
    assert run.ctx.completion_tokens == 3


async def test_without_usage_the_text_events_sent_are_the_token_count():
    body = chunk(content="a") + chunk(content="b") + DONE
    run = await Relayed([chunk(content="a"), chunk(content="b"), DONE]).run()
    assert run.body == body
    assert (run.ctx.prompt_tokens, run.ctx.completion_tokens) == (0, 2)
    # One gap between the two text-carrying writes, on the injected clock.
    assert len(run.itl.observed) == 1 and run.itl.observed[0] > 0


async def test_a_stream_cut_before_done_ends_with_an_error_event():
    body = chunk(content="a") + chunk(content="b")
    run = await Relayed([body]).run()
    assert run.body.startswith(body)
    assert error_event(run.body) == {
        "message": f"upstream {URL} ended the stream without data: [DONE]",
        "type": "upstream_error",
        "param": None,
        "code": "bad_gateway",
    }
    assert run.kinds == ["protocol"] and run.ctx.status == 502
    assert run.call.closed == 1


async def test_a_partial_event_left_by_the_upstream_is_ended_before_the_error():
    run = await Relayed([chunk(content="a"), b'data: {"choices": [{"del']).run()
    # The half event is not JSON: it is not forwarded, and the error is an event of its own.
    assert run.body.startswith(chunk(content="a") + b"data: {")
    assert error_event(run.body)["message"] == f"upstream {URL} ended the stream without data: [DONE]"
    assert run.kinds == ["protocol"]


async def test_done_without_its_blank_line_still_ends_the_stream():
    run = await Relayed([chunk(content="a"), b"data: [DONE]"]).run()
    assert run.body == chunk(content="a") + b"data: [DONE]"
    assert run.kinds == []


async def test_an_event_that_is_not_json_ends_the_stream_there():
    good = chunk(content="a")
    reads = [good + b"data: {not json}\n\n" + chunk(content="never"), DONE]
    run = await Relayed(reads).run()
    assert run.writes[0] == good
    assert (
        run.body
        == good
        + b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": f"upstream {URL} sent an event that is not JSON",
                    "type": "upstream_error",
                    "param": None,
                    "code": "bad_gateway",
                }
            }
        )
        + b"\n\n"
    )
    assert run.kinds == ["protocol"] and run.ctx.status == 502
    assert run.call.response.taken == 1  # nothing more is read from the upstream
    assert run.call.closed == 1


async def test_garbage_as_the_first_event():
    run = await Relayed([b"data: <html>\n\n"]).run()
    assert len(run.writes) == 1
    assert error_event(run.body)["message"] == f"upstream {URL} sent an event that is not JSON"


@pytest.mark.parametrize(
    "error, kind_status, message",
    [
        (httpx.ReadTimeout("idle"), 504, f"upstream {URL} sent nothing for 2 s mid-stream"),
        (httpx.RemoteProtocolError("reset"), 502, f"upstream {URL} broke the stream: RemoteProtocolError"),
    ],
)
async def test_a_transport_fault_mid_stream(error, kind_status, message):
    run = await Relayed([chunk(content="a")], error=error).run()
    assert run.writes[0] == chunk(content="a")
    assert error_event(run.body)["message"] == message
    assert run.kinds == ["midstream"] and run.ctx.status == kind_status
    assert run.ctx.completion_tokens == 1
    assert run.call.closed == 1


async def test_a_responses_stream_ends_with_its_completed_event():
    completed = (
        b"event: response.completed\ndata: "
        + orjson.dumps({"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 1}}})
        + b"\n\n"
    )
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x"}\n\n'
    run = await Relayed([delta, completed[:20], completed[20:]], ends=RESPONSES).run()
    assert run.body == delta + completed
    assert run.kinds == []
    assert (run.ctx.prompt_tokens, run.ctx.completion_tokens) == (5, 1)


async def test_a_responses_stream_without_its_end_event():
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x"}\n\n'
    run = await Relayed([delta, DONE], ends=RESPONSES).run()
    last = run.body.rsplit(b"\n\n", 2)[-2]
    assert last.startswith(b"event: error\ndata: ")  # the Responses API's typed event
    event = orjson.loads(last.removeprefix(b"event: error\ndata: "))
    assert event == {
        "type": "error",
        "code": "bad_gateway",
        "param": None,
        "sequence_number": 0,
        "message": f"upstream {URL} ended the stream without response.completed",
    }
    assert run.kinds == ["protocol"]


async def test_a_client_that_goes_away_still_closes_the_call():
    run = Relayed([chunk(content="a"), chunk(content="b"), DONE])
    body = relay_raw(*run.args)
    assert await body.__anext__() == chunk(content="a")
    await body.aclose()
    assert run.call.closed == 1
    assert run.call.response.taken == 1
    assert run.ctx.upstream_last is None  # the upstream never finished
    assert run.kinds == [] and run.ctx.status == 200  # a client leaving is no upstream fault


def test_end_of_stream_error_counts_and_encodes():
    run = Relayed([])
    event = end_of_stream_error(run.rec, UpstreamTimeout("too slow"), "midstream")
    assert event == (
        b'data: {"error":{"message":"too slow","type":"upstream_error","param":null,"code":"upstream_timeout"}}\n\n'
    )
    assert run.kinds == ["midstream"] and run.ctx.status == 504
