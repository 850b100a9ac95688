"""The app over an injected upstream client (httpx.MockTransport): no servers, no sockets."""

from __future__ import annotations

import contextlib

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings

UPSTREAM = "http://upstream.test"
MODELS = {"object": "list", "data": [{"id": "m", "object": "model"}]}
COMPLETION = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@contextlib.asynccontextmanager
async def gateway(handler, tmp_path, **overrides):
    settings = Settings.model_validate(
        {"upstreams": [UPSTREAM], "audit": {"path": str(tmp_path / "a.db")}, **overrides}
    )
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    registry = CollectorRegistry()
    app = create_app(settings, client=upstream, registry=registry)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            client.registry = registry
            yield client
    await upstream.aclose()


def serving(on_chat):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        return on_chat(request)

    return handler


async def test_body_forwarded_byte_for_byte(tmp_path):
    seen = []

    def chat(request):
        seen.append((request.content, request.headers["x-request-id"]))
        return httpx.Response(200, json=COMPLETION)

    raw = (
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"ignore_eos":true,'
        b'"guided_json":{"type":"object"},"top_k":3}'
    )
    async with gateway(serving(chat), tmp_path) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers={"x-request-id": "rid-1"})
    assert response.status_code == 200 and response.json() == COMPLETION
    assert seen == [(raw, "rid-1")]
    assert response.headers["x-request-id"] == "rid-1"


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (httpx.ConnectError("refused"), 502, "bad_gateway"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.RemoteProtocolError("garbled"), 502, "bad_gateway"),
    ],
)
async def test_transport_failures_map_to_statuses(tmp_path, exc, status, code):
    def chat(request):
        raise exc

    async with gateway(serving(chat), tmp_path) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_input_redaction_rewrites_only_the_text(tmp_path):
    seen = []

    def chat(request):
        seen.append(orjson.loads(request.content))
        return httpx.Response(200, json=COMPLETION)

    monitors = [{"name": "pii", "stages": ["input"], "action": "redact"}]
    async with gateway(serving(chat), tmp_path, monitors=monitors) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "m",
                "top_k": 2,
                "messages": [{"role": "user", "content": "mail me at jane.doe@example.com"}],
            },
        )
    assert response.status_code == 200
    assert seen[0]["messages"][0]["content"] == "mail me at [REDACTED:EMAIL]"
    assert seen[0]["top_k"] == 2


async def test_output_block_replaces_choices(tmp_path):
    monitors = [{"name": "blocklist", "stages": ["output"], "keywords": ["hello"]}]
    async with gateway(serving(lambda r: httpx.Response(200, json=COMPLETION)), tmp_path, monitors=monitors) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "content_filter"
        assert "hello" not in choice["message"]["content"]
        assert "output_monitors;dur=" in response.headers["server-timing"]
        assert (
            client.registry.get_sample_value(
                "taxgate_monitor_verdicts_total", {"monitor": "blocklist", "stage": "output", "action": "block"}
            )
            == 1
        )


def sse(*texts: str, finish: str = "stop") -> bytes:
    events = []
    for index, text in enumerate(texts):
        last = index == len(texts) - 1
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish if last else None}
        events.append(
            b"data: "
            + orjson.dumps({"id": "s", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})
            + b"\n\n"
        )
    return b"".join(events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
async def test_word_in_the_finishing_chunk_is_still_blocked(tmp_path, mode):
    stream = sse("all ", "fine ", "until ", "forbidden")

    async def body():
        for line in stream.split(b"\n\n")[:-1]:
            yield line + b"\n\n"  # one network read per event, as from a real server

    def chat(request):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    monitors = [{"name": "blocklist", "stages": ["output"], "keywords": ["forbidden"]}]
    async with gateway(
        serving(chat), tmp_path, monitors=monitors, streaming={"mode": mode, "overlap_chars": 2}
    ) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
    chunks = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert "forbidden" not in "".join(c["choices"][0].get("delta", {}).get("content") or "" for c in chunks)
    assert response.text.endswith("data: [DONE]\n\n")


async def test_pass_through_takes_tokens_from_usage_in_its_own_read(tmp_path):
    usage = {
        "id": "s",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    events = sse("a", "", "b").split(b"data: [DONE]")[0].split(b"\n\n")[:-1]
    reads = [event + b"\n\n" for event in events]
    reads += [b"data: " + orjson.dumps(usage) + b"\n\n", b"data: [DONE]\n\n"]

    async def body():
        for read in reads:
            yield read

    def chat(request):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    async with gateway(serving(chat), tmp_path) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.content == b"".join(reads)  # forwarded byte for byte
        sample = client.registry.get_sample_value
        assert sample("taxgate_completion_tokens_total", {"model": "m"}) == 7
        assert sample("taxgate_prompt_tokens_total", {"model": "m"}) == 5


async def test_non_streamed_body_failure_is_502_not_500(tmp_path):
    async def broken():
        yield b'{"id": "x", "choices": ['
        raise httpx.RemoteProtocolError("peer closed connection")

    def chat(request):
        return httpx.Response(200, content=broken(), headers={"content-type": "application/json"})

    async with gateway(serving(chat), tmp_path) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


async def test_redaction_keeps_the_finish_reason_of_the_last_chunk(tmp_path):
    stream = sse("mail me at ", "bob@example.com", " thanks", finish="length")

    async def body():
        for line in stream.split(b"\n\n")[:-1]:
            yield line + b"\n\n"

    def chat(request):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    monitors = [{"name": "pii", "stages": ["output"], "action": "redact"}]
    async with gateway(serving(chat), tmp_path, monitors=monitors) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
        chunks = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == "mail me at [REDACTED:EMAIL] thanks"
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        # The stream was read to its end: the model's own time is on record.
        assert (
            client.registry.get_sample_value("taxgate_upstream_e2e_seconds_count", {"route": "chat", "model": "m"}) == 1
        )
