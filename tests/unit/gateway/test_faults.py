"""Upstream and client faults, over an injected upstream (httpx.MockTransport).

Every fault has one defined outcome: a status with an OpenAI-shaped body before the
stream starts, an SSE error event after, the right ``upstream_errors_total{kind}``, the
in-flight slot freed, and the next request fine.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.gateway.test_proxy import COMPLETION, gateway, serving, sse

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PII_OUT = [{"name": "pii", "stages": ["output"], "action": "redact"}]


def answering(body: bytes, content_type: str = "text/event-stream", reads=None):
    async def stream():
        for read in reads or [body]:
            yield read

    def chat(request):
        import httpx

        return httpx.Response(200, content=stream(), headers={"content-type": content_type})

    return serving(chat)


def sample(client, name, **labels):
    return client.registry.get_sample_value(name, labels) or 0


def upstream_errors(client, kind):
    return sample(client, "taxgate_upstream_errors_total", upstream="http://upstream.test", kind=kind)


def events(text: str) -> list:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize(
    "usage", [{"prompt_tokens": "ten", "completion_tokens": 1}, {"prompt_tokens": 1, "completion_tokens": -3}, "lots"]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_usage_never_leaks_the_slot(tmp_path, usage, stream):
    if stream:
        tail = b"data: " + orjson.dumps({"id": "s", "choices": [], "usage": usage}) + b"\n\n"
        body = sse("a", "b").replace(b"data: [DONE]\n\n", tail + b"data: [DONE]\n\n")
        handler = answering(body)
    else:
        handler = answering(orjson.dumps({**COMPLETION, "usage": usage}), "application/json")
    async with gateway(handler, tmp_path, max_in_flight=2) as client:
        for _ in range(3):  # more than max_in_flight: a leaked slot would 503 the third
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            assert response.status_code == (200 if stream else 502)
        assert sample(client, "taxgate_in_flight_requests") == 0
        assert upstream_errors(client, "protocol") == 3
        status = "200" if stream else "502"
        assert sample(client, "taxgate_requests_total", route="chat", model="m", status=status) == 3


@pytest.mark.parametrize("monitors", [[], PII_OUT], ids=["raw", "monitored"])
@pytest.mark.parametrize(
    "body,content_type", [(b"<html>oops</html>", "text/html"), (orjson.dumps(COMPLETION), "application/json")]
)
async def test_stream_answered_with_a_whole_body_is_502(tmp_path, monitors, body, content_type):
    async with gateway(answering(body, content_type), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "bad_gateway"
        assert upstream_errors(client, "protocol") == 1
        assert sample(client, "taxgate_in_flight_requests") == 0


@pytest.mark.parametrize("monitors", [[], PII_OUT], ids=["raw", "monitored"])
async def test_stream_without_done_ends_with_an_error_event(tmp_path, monitors):
    body = sse("one ", "two").replace(b"data: [DONE]\n\n", b"")
    async with gateway(answering(body), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        last = events(response.text)[-1]
        assert last["error"]["code"] == "bad_gateway" and "[DONE]" in last["error"]["message"]
        assert upstream_errors(client, "protocol") == 1
        assert sample(client, "taxgate_requests_total", route="chat", model="m", status="502") == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"choices": None},
        {"choices": [1]},
        {"choices": [{"index": 0, "message": "hi"}]},
        {"choices": [{"index": 0, "message": {"content": 5}}]},
        [1],
    ],
)
async def test_wrong_shaped_answer_is_502(tmp_path, payload):
    handler = answering(orjson.dumps(payload), "application/json")
    async with gateway(handler, tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "upstream_error"


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [1]},
        {"choices": {"a": 1}},
        {"choices": [{"index": 0, "delta": "hi"}]},
        {"choices": [{"index": "x", "delta": {}}]},
    ],
)
async def test_wrong_shaped_chunk_ends_the_monitored_stream_with_an_error(tmp_path, chunk):
    body = sse("fine ").replace(b"data: [DONE]", b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]")
    async with gateway(answering(body), tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert events(response.text)[-1]["error"]["code"] == "bad_gateway"
        assert upstream_errors(client, "protocol") == 1
        assert sample(client, "taxgate_in_flight_requests") == 0


async def test_non_ascii_request_id_is_replaced(tmp_path):
    seen = []

    def chat(request):
        import httpx

        seen.append(request.headers["x-request-id"])
        return httpx.Response(200, json=COMPLETION)

    async with gateway(serving(chat), tmp_path) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": b"abc\xff"})
    assert response.status_code == 200
    assert seen[0] != "abc\xff" and response.headers["x-request-id"] == seen[0]


@pytest.mark.parametrize("spaced", [False, True])
async def test_token_count_does_not_depend_on_json_spacing(tmp_path, spaced):
    body = sse("a", "b", "c")
    if spaced:  # as Python's json.dumps writes it
        body = body.replace(b'":"', b'": "').replace(b'","', b'", "').replace(b'":', b'": ')
    async with gateway(answering(body), tmp_path) as client:
        await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert sample(client, "taxgate_completion_tokens_total", model="m") == 3


# -- any upstream chunk shape, both relays ---------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "delta",
                    "content",
                    "index",
                    "text",
                    "message",
                    "finish_reason",
                    "tool_calls",
                    "logprobs",
                    "usage",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@st.composite
def upstream_streams(draw):
    events = []
    for value in draw(st.lists(json_values, max_size=4)):
        events.append(b"data: " + orjson.dumps(value) + b"\n\n")
    if draw(st.booleans()):
        events.append(b"data: [DONE]\n\n")
    elif draw(st.booleans()):
        events.append(draw(st.binary(max_size=20)))
    return events


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(reads=upstream_streams(), monitored=st.booleans())
async def test_any_upstream_stream_has_a_defined_outcome(tmp_path, reads, monitored):
    handler = answering(b"", reads=reads or [b""])
    async with gateway(handler, tmp_path, monitors=PII_OUT if monitored else []) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 200
        text = response.text
        ended = text.endswith("data: [DONE]\n\n")
        if not ended:  # a failure after the stream started: one error event, counted
            last = text[text.rindex("\n\ndata: ") + 8 :] if "\n\ndata: " in text else text[6:]
            assert orjson.loads(last)["error"]["code"] in ("bad_gateway", "upstream_timeout")
            assert sum(upstream_errors(client, kind) for kind in ("protocol", "midstream")) >= 1
        assert sample(client, "taxgate_in_flight_requests") == 0
        follow = await client.post("/v1/chat/completions", json=CHAT)
        assert follow.status_code in (200, 502)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(payload=json_values)
async def test_any_whole_answer_is_200_or_502(tmp_path, payload):
    handler = answering(orjson.dumps(payload), "application/json")
    async with gateway(handler, tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code in (200, 502)
        if response.status_code == 502:
            assert response.json()["error"]["code"] == "bad_gateway"
        assert sample(client, "taxgate_in_flight_requests") == 0


@pytest.mark.parametrize("split", [False, True])
async def test_raw_relay_cuts_a_stream_at_an_event_that_is_not_json(tmp_path, split):
    good = sse("one ", "two").split(b"data: [DONE]")[0]
    reads = [good, b"data: <html>oops</html>\n\n", sse("three")]
    if split:  # the garbage line begins a read that continues a line: still found
        reads = [good + b"da", b"ta: garbage\n\n", sse("three")]
    async with gateway(answering(b"", reads=reads), tmp_path) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        text = response.text
        assert text.startswith(good.decode()) and "three" not in text
        assert events(text)[-1]["error"]["code"] == "bad_gateway"
        assert upstream_errors(client, "protocol") == 1
