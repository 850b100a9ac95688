"""``POST /v1/responses`` over a mock upstream: pass-through, input and output monitors,
whole and streamed, and the upstream's wrong shapes."""

from __future__ import annotations

import httpx
import orjson
import pytest

from loadtest.sim.responses_api import EventEncoder, whole_body
from tests.unit.gateway.test_proxy import MODELS, gateway

PII_OUT = [{"name": "pii", "stages": ["output"], "action": "redact"}]
BLOCK_OUT = [{"name": "blocklist", "stages": ["output"], "keywords": ["forbiddenword"]}]
BLOCK_IN = [{"name": "blocklist", "stages": ["input"], "keywords": ["forbiddenword"]}]


def stream_reads(pieces: list[str]) -> list[bytes]:
    """The simulator's own event sequence for ``pieces``, one read per event group."""
    encoder = EventEncoder("resp_1", "m", 3)
    return [encoder.start(), *(encoder.delta(p) for p in pieces), encoder.finish(len(pieces), "stop")]


def upstream(answer, seen: list | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        assert request.url.path == "/v1/responses"
        if seen is not None:
            seen.append(request.content)
        if isinstance(answer, list):

            async def body():
                for read in answer:
                    yield read

            return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=answer, headers={"content-type": "application/json"})

    return handler


def typed(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        if block:
            event, data = block.split("\n")
            events.append(orjson.loads(data[len("data: ") :]))
            assert event == "event: " + events[-1]["type"]
    return events


def whole(text: str) -> bytes:
    return whole_body("resp_1", "m", text, "stop", 3, 4)


async def test_request_forwarded_byte_for_byte_and_answer_untouched(tmp_path):
    seen: list[bytes] = []
    raw = b'{"model":"m","input":"hi","store":false,"reasoning":{"effort":"low"}}'
    answer = whole("hello")
    async with gateway(upstream(answer, seen), tmp_path) as client:
        response = await client.post("/v1/responses", content=raw)
        assert (
            client.registry.get_sample_value(
                "taxgate_requests_total", {"route": "responses", "model": "m", "status": "200"}
            )
            == 1
        )
        assert client.registry.get_sample_value("taxgate_completion_tokens_total", {"model": "m"}) == 4
    assert response.status_code == 200 and response.content == answer
    assert "upstream;dur=" in response.headers["server-timing"]
    assert seen == [raw]


async def test_input_monitor_blocks_with_content_blocked(tmp_path):
    seen: list[bytes] = []
    async with gateway(upstream(whole("x"), seen), tmp_path, monitors=BLOCK_IN) as client:
        response = await client.post(
            "/v1/responses",
            json={
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "say forbiddenword"}]}],
            },
        )
        image = await client.post(
            "/v1/responses",
            json={
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],
            },
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_blocked"
    assert response.json()["error"]["param"] == "input"
    assert image.status_code == 400
    assert image.json()["error"]["code"] == "uncheckable_input"
    assert seen == []


async def test_whole_answer_redacted_in_place(tmp_path):
    async with gateway(upstream(whole("mail bob@example.com now")), tmp_path, monitors=PII_OUT) as client:
        body = (await client.post("/v1/responses", json={"model": "m", "input": "hi"})).json()
    assert body["output"][0]["content"][0]["text"] == "mail [REDACTED:EMAIL] now"
    assert body["status"] == "completed"


async def test_whole_answer_blocked_becomes_the_refusal(tmp_path):
    payload = orjson.loads(whole("fine"))
    payload["output"].insert(
        0, {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"q": "forbiddenword"}', "id": "fc"}
    )
    async with gateway(upstream(orjson.dumps(payload)), tmp_path, monitors=BLOCK_OUT) as client:
        body = (await client.post("/v1/responses", json={"model": "m", "input": "hi"})).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "content_filter"}
    [message] = body["output"]
    assert message["type"] == "message" and "forbiddenword" not in orjson.dumps(body).decode()


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        b'{"output": 3}',
        b'{"output": [{"type": "message", "content": [{"type": "output_text", "text": 7}]}]}',
    ],
)
async def test_wrong_shapes_are_502(tmp_path, answer):
    async with gateway(upstream(answer), tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
async def test_stream_redacted_in_deltas_and_in_the_final_response(tmp_path, mode):
    reads = stream_reads(["mail bob@exa", "mple.com", " now"])
    async with gateway(upstream(reads), tmp_path, monitors=PII_OUT, streaming={"mode": mode}) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    events = typed(response.text)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    final = events[-1]
    assert final["type"] == "response.completed"
    if mode == "holdback":
        assert text == "mail [REDACTED:EMAIL] now"
        assert done["text"] == text
        assert final["response"]["output"][0]["content"][0]["text"] == text
    else:  # stream-first sends before it checks: the final texts say what was sent
        assert text == "mail bob@example.com now"
        assert done["text"] == text


async def test_stream_without_output_monitors_is_relayed_raw(tmp_path):
    reads = stream_reads(["one", " two"])
    async with gateway(upstream(reads), tmp_path) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
        assert client.registry.get_sample_value("taxgate_completion_tokens_total", {"model": "m"}) == 2
    assert response.content == b"".join(reads)


@pytest.mark.parametrize("monitors", [[], PII_OUT], ids=["raw", "monitored"])
async def test_stream_cut_short_ends_with_a_typed_error_event(tmp_path, monitors):
    reads = stream_reads(["one", " two"])[:-1]
    async with gateway(upstream(reads), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
        assert (
            client.registry.get_sample_value(
                "taxgate_upstream_errors_total", {"upstream": "http://upstream.test", "kind": "protocol"}
            )
            == 1
        )
    assert response.status_code == 200
    events = typed(response.text)
    # Both relays end it the same way, numbered after the last event the upstream sent
    # (hold-back may not have let the last delta out).
    assert events[-1] == {
        "type": "error",
        "code": "bad_gateway",
        "message": "upstream http://upstream.test ended the stream without response.completed",
        "param": None,
        "sequence_number": 6,
    }
    assert "response.completed" not in [e["type"] for e in events]


async def test_raw_stream_garbage_ends_with_a_typed_error_event(tmp_path):
    reads = stream_reads(["one", " two"])
    reads[2:] = [reads[2] + b'event: response.output_text.delta\ndata: {"type": <html>\n\n']
    async with gateway(upstream(reads), tmp_path) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    events = typed(response.text)
    assert [e["type"] for e in events][-3:] == ["response.output_text.delta"] * 2 + ["error"]
    assert events[-1]["sequence_number"] == events[-2]["sequence_number"] + 1
    assert "not JSON" in events[-1]["message"] and "<html>" not in response.text


async def test_stream_blocked_ends_incomplete_with_the_refusal(tmp_path):
    reads = stream_reads(["this is ", "forbiddenword", " text"])
    async with gateway(upstream(reads), tmp_path, monitors=BLOCK_OUT) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    events = typed(response.text)
    assert "forbiddenword" not in response.text
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert final["response"]["status"] == "incomplete"


async def test_the_upstreams_error_event_ends_the_stream(tmp_path):
    reads = stream_reads(["one"])[:2] + [
        b'event: error\ndata: {"type":"error","code":"server_error","message":"boom",'
        b'"param":null,"sequence_number":5}\n\n'
    ]
    async with gateway(upstream(reads), tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    events = typed(response.text)
    assert [e["type"] for e in events][-2:] == ["response.output_text.delta", "error"]
    assert events[-1]["message"] == "boom"
