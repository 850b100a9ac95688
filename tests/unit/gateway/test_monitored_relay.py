"""``relay_monitored`` over fake upstream bytes and a real monitor pipeline (pii redacts,
a blocklist blocks; both pure, no servers): any split of the upstream's bytes into reads
gives the client the same answer, a block or a fault mid-stream ends the stream with
the endpoint's events, and the upstream call is closed however the stream ends."""

from __future__ import annotations

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.context import RequestContext
from gateway.endpoints.chat import CHAT
from gateway.endpoints.responses import RESPONSES
from gateway.metrics import GatewayMetrics
from gateway.monitored_relay import OutputGuard, relay_monitored
from gateway.recorder import StreamRecorder
from gateway.settings import StreamingSpec
from gateway.stream_policy import stream_policy
from loadtest.sim.responses_api import EventEncoder
from monitors.config import MonitorSpec
from monitors.pipeline import MonitorPipeline
from tests.unit.gateway.test_relay import DONE, USAGE, USAGE_EVENT, FakeCall, FakeResponse, Histogram, chunk

MONITORS = [
    MonitorSpec.model_validate({"name": "pii", "action": "redact", "stages": ["output"]}),
    MonitorSpec.model_validate(
        {"name": "blocklist", "action": "block", "stages": ["output"], "keywords": ["forbidden"]}
    ),
]
FINISH = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'


def chat_stream(*pieces: str) -> bytes:
    return chunk(role="assistant") + b"".join(chunk(content=p) for p in pieces) + FINISH + USAGE_EVENT + DONE


def responses_stream(*pieces: str) -> bytes:
    encoder = EventEncoder("resp_1", "m", 3)
    return b"".join([encoder.start(), *(encoder.delta(p) for p in pieces), encoder.finish(len(pieces), "stop")])


class Relay:
    """One relay_monitored run over ``reads``: what the client got, what was recorded."""

    def __init__(
        self,
        pipeline: MonitorPipeline,
        reads: list[bytes],
        *,
        endpoint=CHAT,
        error: Exception | None = None,
        mode: str = "holdback",
    ) -> None:
        self.call = FakeCall(FakeResponse(reads, error))
        self.ctx = RequestContext("r1", endpoint.name, started=0.0)
        self.kinds: list[str] = []
        ticks = iter(range(1, 100_000))
        self.rec = StreamRecorder(self.ctx, Histogram(), self.kinds.append, lambda: float(next(ticks)))
        self.metrics = GatewayMetrics(CollectorRegistry())
        guard = OutputGuard(pipeline.stage("output", request_id="r1"), self.rec)
        policy = stream_policy(guard, StreamingSpec(mode=mode), self.rec.clock, enforcing=True)
        dialect = endpoint.output.stream(self.ctx.verdict_fields, "refused", self.rec.clock)
        self.body = relay_monitored(self.call, self.rec, dialect, policy, guard, metrics=self.metrics, idle_s=2.0)
        self.writes: list[bytes] = []

    async def run(self) -> Relay:
        async for write in self.body:
            self.writes.append(write)
        return self

    def events(self) -> list[bytes]:
        return [event for event in b"".join(self.writes).split(b"\n\n") if event]

    def chat_text(self) -> str:
        return "".join(
            orjson.loads(event[6:])["choices"][0]["delta"].get("content") or ""
            for event in self.events()
            if event.startswith(b"data: {") and b'"choices":[{' in event
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def pipeline():
    monitors = MonitorPipeline(MONITORS, metrics=GatewayMetrics(CollectorRegistry()).monitors)
    await monitors.start()
    yield monitors
    await monitors.close()


STREAM = chat_stream("mail bob@exa", "mple.com", " now.")


async def test_any_split_of_the_upstream_bytes_gives_the_same_redacted_answer(pipeline):
    for offset in range(len(STREAM) + 1):
        run = await Relay(pipeline, [STREAM[:offset], STREAM[offset:]]).run()
        assert run.chat_text() == "mail [REDACTED:EMAIL] now.", offset
        assert run.events()[-1] == b"data: [DONE]", offset
        assert b"bob@" not in b"".join(run.writes), offset
        assert run.ctx.delivered and run.ctx.status == 200 and run.kinds == [], offset
        assert run.ctx.completion_tokens == USAGE["completion_tokens"]  # the usage event, not a count
        assert run.call.closed >= 1


async def test_one_byte_per_read(pipeline):
    run = await Relay(pipeline, [STREAM[i : i + 1] for i in range(len(STREAM))]).run()
    assert run.chat_text() == "mail [REDACTED:EMAIL] now."
    assert run.events()[-1] == b"data: [DONE]"


async def test_after_done_the_rest_of_the_body_is_read_not_sent(pipeline):
    # Read to its end so the connection can be reused; nothing after [DONE] reaches the client.
    run = await Relay(pipeline, [STREAM, b": trailing comment\n\n", b""]).run()
    assert run.call.response.taken == 3
    assert run.events()[-1] == b"data: [DONE]"


BLOCKED = chat_stream("all fine ", "until the for", "bidden word ", "and more")


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
async def test_a_block_mid_stream_ends_it_with_content_filter(pipeline, mode):
    for offset in range(len(BLOCKED) + 1):
        run = await Relay(pipeline, [BLOCKED[:offset], BLOCKED[offset:]], mode=mode).run()
        events = run.events()
        assert events[-1] == b"data: [DONE]", offset
        finish = orjson.loads(events[-2][6:])["choices"][0]
        assert finish["finish_reason"] == "content_filter", offset
        if mode == "holdback":
            assert "forbidden" not in run.chat_text(), offset  # not one character of the match left
            assert "for" not in run.chat_text() and run.chat_text().startswith("all fine"), offset
        assert run.sample("taxgate_stream_blocks_total", mode=mode) == 1
        assert run.call.closed >= 1  # the upstream request was cancelled


async def test_a_block_closes_the_upstream_before_its_body_ends(pipeline):
    reads = [chunk(role="assistant"), chunk(content="the forbidden "), chunk(content="rest"), FINISH, DONE]
    run = await Relay(pipeline, reads).run()
    assert run.call.response.taken == 2  # nothing read after the read that blocked
    assert run.chat_text() == "the "


@pytest.mark.parametrize("error", [httpx.ReadError("reset"), httpx.ReadTimeout("idle")])
async def test_a_transport_fault_mid_stream_ends_with_an_error_event(pipeline, error):
    reads = [chunk(role="assistant"), chunk(content="hello there "), chunk(content="bob@example.com ")]
    run = await Relay(pipeline, reads, error=error).run()
    last = orjson.loads(run.events()[-1][6:])
    assert "error" in last and run.kinds == ["midstream"]
    assert run.ctx.status == (504 if isinstance(error, httpx.TimeoutException) else 502)
    assert "bob@" not in run.chat_text()
    assert run.call.closed >= 1


async def test_an_event_that_is_not_a_completion_chunk_ends_the_stream(pipeline):
    reads = [chunk(content="hello "), b'data: {"choices": 3}\n\n', chunk(content="never")]
    run = await Relay(pipeline, reads).run()
    last = orjson.loads(run.events()[-1][6:])
    assert "not a completion chunk" in last["error"]["message"]
    assert run.kinds == ["protocol"] and "never" not in run.chat_text()


async def test_a_stream_that_ends_without_done_ends_with_an_error_event(pipeline):
    run = await Relay(pipeline, [chunk(content="hello "), chunk(content="there")]).run()
    last = orjson.loads(run.events()[-1][6:])
    assert "without [DONE]" in last["error"]["message"]
    # An answer cut short is not drained: its held last word (unchecked whole) stays back.
    assert run.chat_text() == "hello "
    assert not run.ctx.delivered and run.kinds == ["protocol"]


async def test_a_client_that_leaves_closes_the_upstream_and_the_policy(pipeline):
    run = Relay(pipeline, [chunk(content="hello "), chunk(content="there "), FINISH, DONE])
    first = await anext(run.body)
    assert first
    await run.body.aclose()
    assert run.call.closed >= 1
    assert run.sample("taxgate_stream_checks_count") == 1  # the finally ran


RESPONSE = responses_stream("mail bob@exa", "mple.com", " now")


async def test_a_responses_stream_at_any_split_is_redacted_in_deltas_and_in_the_end(pipeline):
    # Every fourth offset: the stream is 3.7 kB of typed events, most of them repeating texts.
    for offset in [*range(0, len(RESPONSE), 4), len(RESPONSE)]:
        run = await Relay(pipeline, [RESPONSE[:offset], RESPONSE[offset:]], endpoint=RESPONSES).run()
        events = [orjson.loads(event.split(b"\ndata: ", 1)[1]) for event in run.events()]
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text == "mail [REDACTED:EMAIL] now", offset
        assert events[-1]["type"] == "response.completed", offset
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == text, offset
        assert run.ctx.delivered, offset


async def test_a_responses_stream_blocked_ends_incomplete_with_the_refusal(pipeline):
    reads = [responses_stream("it is forbidden", " to say")]
    run = await Relay(pipeline, reads, endpoint=RESPONSES).run()
    last = orjson.loads(run.events()[-1].split(b"\ndata: ", 1)[1])
    assert last["type"] == "response.incomplete"
    assert last["response"]["output"][0]["content"][0]["text"] == "refused"
    assert b"forbidden" not in b"".join(run.writes)
