"""SSE timing (TTFT, every ITL gap, E2E, tokens) and the sample line format."""

from __future__ import annotations

import orjson
import pytest

from loadtest.bench.samples import Sample, SampleWriter, read_samples
from loadtest.bench.streamtiming import StreamTimer
from loadtest.sim.responses_api import EventEncoder


def chunk(content=None, finish=None, usage=None, role=None):
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        event["usage"] = usage
    return b"data: " + orjson.dumps(event) + b"\n"


def test_ttft_waits_for_text_and_every_gap_is_an_itl():
    timer = StreamTimer(keep_text=True)
    timer.feed(chunk(role="assistant", content=""), 0.05)  # vLLM's empty first chunk
    timer.feed(b"\n", 0.05)
    timer.feed(chunk("Hel"), 0.10)
    timer.feed(chunk("lo"), 0.12)
    timer.feed(chunk(" you"), 0.15)
    timer.feed(chunk(finish="stop"), 0.16)
    timer.feed(b"data: [DONE]\n", 0.17)
    result = timer.finish()
    assert result.ttft_s == 0.10
    assert result.itls_s == pytest.approx([0.02, 0.03])
    assert result.e2e_s == 0.17
    assert result.output_tokens == 3
    assert result.text == "Hello you"
    assert result.finish_reason == "stop"
    assert result.error is None


def test_usage_overrides_the_chunk_count():
    timer = StreamTimer()
    timer.feed(chunk("a b c"), 0.1)
    timer.feed(b"data: " + orjson.dumps({"choices": [], "usage": {"completion_tokens": 3}}), 0.2)
    assert timer.finish().output_tokens == 3


def test_content_filter_is_a_block_not_an_error():
    timer = StreamTimer()
    timer.feed(chunk(finish="content_filter"), 0.1)
    result = timer.finish()
    assert result.blocked
    assert result.error is None


def test_error_events_and_empty_streams_are_errors():
    timer = StreamTimer()
    timer.feed(b'data: {"error": {"message": "upstream went away"}}', 0.1)
    assert timer.finish().error == "upstream went away"
    assert StreamTimer().finish().error == "stream ended without any generated text"


def test_comments_and_text_completions():
    timer = StreamTimer()
    timer.feed(b": keep-alive", 0.01)
    timer.feed(b'data: {"choices": [{"text": "hi", "finish_reason": null}]}', 0.02)
    assert timer.finish().ttft_s == 0.02


def test_malformed_data_is_reported():
    timer = StreamTimer()
    timer.feed(b"data: {not json", 0.1)
    assert "malformed" in timer.finish().error


def feed_lines(timer: StreamTimer, reads: list[tuple[bytes, float]]) -> None:
    for read, at_s in reads:
        for line in read.splitlines(keepends=True):
            timer.feed(line, at_s)


def test_responses_stream_times_its_text_deltas_and_reads_the_final_usage():
    encoder = EventEncoder("resp_1", "m", prompt_tokens=3)
    timer = StreamTimer(keep_text=True, route="responses")
    feed_lines(
        timer,
        [
            (encoder.start(), 0.05),
            (encoder.delta("Hel"), 0.10),
            (encoder.delta("lo"), 0.12),
            (encoder.delta(" you"), 0.15),
            (encoder.finish(7, "stop"), 0.16),
        ],
    )
    result = timer.finish()
    assert result.ttft_s == 0.10  # not the response.created before it
    assert result.itls_s == pytest.approx([0.02, 0.03])
    assert result.e2e_s == 0.16
    assert result.output_tokens == 7  # the final Response's usage, not the delta count
    assert result.text == "Hello you" and result.error is None and not result.blocked


def test_responses_stream_ends_blocked_or_failed():
    cut = {
        "type": "response.incomplete",
        "sequence_number": 5,
        "response": {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
    }
    timer = StreamTimer(route="responses")
    timer.feed(b"event: response.incomplete\n", 0.1)
    timer.feed(b"data: " + orjson.dumps(cut) + b"\n", 0.1)
    assert timer.finish().blocked
    error = {
        "type": "error",
        "code": "bad_gateway",
        "message": "upstream broke the stream",
        "param": None,
        "sequence_number": 9,
    }
    timer = StreamTimer(route="responses")
    feed_lines(
        timer,
        [(EventEncoder("r", "m", 1).delta("hi"), 0.1), (b"event: error\ndata: " + orjson.dumps(error) + b"\n\n", 0.2)],
    )
    assert timer.finish().error == "upstream broke the stream"
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {"message": "engine died"}}}
    timer = StreamTimer(route="responses")
    timer.feed(b"data: " + orjson.dumps(failed), 0.1)
    assert timer.finish().error == "engine died"


def test_samples_round_trip_through_a_file(tmp_path):
    path = tmp_path / "s.jsonl"
    writer = SampleWriter(path)
    first = Sample(start=1.5, status=200, ttft_s=0.1, e2e_s=0.5, itls_s=(0.1, 0.2), output_tokens=3)
    writer.write(first)
    writer.write(Sample(start=2.0, status=502, ttft_s=None, e2e_s=None, itls_s=(), output_tokens=0, error="HTTP 502"))
    writer.close()
    # A writer killed mid-line leaves a torn last line: skipped, not fatal.
    with path.open("ab") as f:
        f.write(b'{"start": 3.0, "sta')
    samples = read_samples(path)
    assert samples[0] == first
    assert samples[1].error == "HTTP 502" and not samples[1].ok
    assert len(samples) == 2


def test_a_bad_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"garbage\n" + Sample(1, 200, 0.1, 0.2, (), 1).to_line())
    with pytest.raises(ValueError, match="s.jsonl:1"):
        read_samples(path)


def test_missing_file_is_no_samples(tmp_path):
    assert read_samples(tmp_path / "none.jsonl") == []
