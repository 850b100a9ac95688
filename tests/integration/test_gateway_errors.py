"""Failure paths against a scripted upstream: a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import ThreadedServer, free_port

pytestmark = pytest.mark.integration

MODEL = "scripted"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def chunk(text: str) -> bytes:
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","model":"scripted","choices":'
        b'[{"index":0,"delta":{"content":"' + text.encode() + b'"},"finish_reason":null}]}\n\n'
    )


def scripted_upstream(hits: list[str]) -> Starlette:
    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        behaviour = body["messages"][0]["content"]
        hits.append(behaviour)
        if behaviour == "slow":
            await asyncio.sleep(3)
        if behaviour == "watch-disconnect":
            # Like vLLM's non-streamed path: no byte until the answer is complete.
            for _ in range(100):
                if await request.is_disconnected():
                    hits.append("client-gone")
                    return Response(status_code=499)
                await asyncio.sleep(0.05)
        if behaviour == "garbled":
            return Response(b"<html>not json</html>", media_type="text/html")
        if behaviour == "refuse":
            return JSONResponse(
                {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}, status_code=400
            )
        if behaviour == "break-stream":

            async def broken():
                yield chunk("one")
                yield chunk("two")
                raise RuntimeError("engine died")  # the server drops the connection

            return StreamingResponse(broken(), media_type="text/event-stream")
        if behaviour == "linger-after-done":

            async def lingering():
                yield chunk("one")
                yield (
                    b'data: {"id":"c","object":"chat.completion.chunk","model":"scripted",'
                    b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7,'
                    b'"total_tokens":10}}\n\n'
                )
                yield b"data: [DONE]\n\n"
                # The end of the body comes late: a client that stops at [DONE] leaves first.
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    hits.append("closed-after-done")
                    raise

            return StreamingResponse(lingering(), media_type="text/event-stream")
        if behaviour == "stall-stream":

            async def stalled():
                yield chunk("one")
                await asyncio.sleep(3)
                yield chunk("late")

            return StreamingResponse(stalled(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "c",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/health", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


@pytest.fixture
def upstream():
    hits: list[str] = []
    server = ThreadedServer(scripted_upstream(hits)).start()
    server.hits = hits
    yield server
    server.stop()


def ask(gateway, content: str, **extra) -> httpx.Response:
    return httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=30,
        json={**CHAT, "messages": [{"role": "user", "content": content}], **extra},
    )


def test_upstream_timeout_is_504(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url], timeouts={"first_byte_s": 0.5})
    response = ask(gateway, "slow")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert gateway.sample("taxgate_upstream_errors_total", upstream=upstream.base_url, kind="timeout") == 1


def test_garbled_upstream_is_502(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url])
    response = ask(gateway, "garbled")
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"


def test_upstream_error_status_passes_through(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url])
    response = ask(gateway, "refuse")
    assert response.status_code == 400 and response.json()["error"]["message"] == "bad"


@pytest.mark.parametrize("behaviour, code", [("break-stream", "bad_gateway"), ("stall-stream", "upstream_timeout")])
def test_midstream_failure_ends_with_sse_error_event(start_gateway, upstream, behaviour, code):
    gateway = start_gateway(upstreams=[upstream.base_url], timeouts={"idle_s": 0.5})
    response = ask(gateway, behaviour, stream=True)
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0].startswith('data: {"id"')
    assert f'"code":"{code}"' in events[-1]
    assert gateway.sample("taxgate_upstream_errors_total", upstream=upstream.base_url, kind="midstream") == 1


@pytest.mark.parametrize(
    "monitors",
    [[], [{"name": "blocklist", "stages": ["output"], "action": "block", "patterns": ["never-said"]}]],
    ids=["raw", "monitored"],
)
def test_client_closing_at_done_is_a_finished_request(start_gateway, upstream, monitors):
    # The sync openai client closes the connection as soon as it reads [DONE]; the
    # upstream's end of body may not have reached the gateway yet.
    gateway = start_gateway(upstreams=[upstream.base_url], monitors=monitors)
    body = {**CHAT, "messages": [{"role": "user", "content": "linger-after-done"}], "stream": True}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.v1 + "/chat/completions", json=body) as response:
            lines: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line)
                if line == "data: [DONE]":
                    break
    assert lines[-1] == "data: [DONE]"
    assert gateway.wait_sample("taxgate_requests_total", 1, route="chat", model=MODEL, status="200") == 1
    assert gateway.sample("taxgate_requests_total", route="chat", model=MODEL, status="499") == 0
    assert gateway.sample("taxgate_client_disconnects_total", route="chat") == 0
    # The usage event came before [DONE], so the upstream's count stands.
    assert gateway.sample("taxgate_completion_tokens_total", model=MODEL) == 7
    assert gateway.sample("taxgate_e2e_seconds_count", route="chat", model=MODEL) == 1
    assert gateway.sample("taxgate_in_flight_requests") == 0
    deadline = time.monotonic() + 3  # the upstream would otherwise hold it for 5 s
    while "closed-after-done" not in upstream.hits:
        assert time.monotonic() < deadline, "the upstream request outlived the client"
        time.sleep(0.05)


def test_client_leaving_a_non_streamed_request_cancels_it_upstream(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url])
    with pytest.raises(httpx.ReadTimeout):
        ask_with_timeout(gateway, "watch-disconnect", 0.5)
    deadline = time.monotonic() + 3  # the upstream would otherwise hold it for 5 s
    while "client-gone" not in upstream.hits:
        assert time.monotonic() < deadline, "the upstream request outlived the client"
        time.sleep(0.05)
    assert gateway.wait_sample("taxgate_client_disconnects_total", 1, route="chat") == 1


def ask_with_timeout(gateway, content: str, timeout_s: float) -> httpx.Response:
    return httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=timeout_s,
        json={**CHAT, "messages": [{"role": "user", "content": content}]},
    )


def test_body_limit_is_413(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url], max_body_bytes=2048)
    response = ask(gateway, "x" * 4096)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.hits == []  # nothing oversize reached the upstream


def test_api_keys(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url], api_keys=["k-one", "k-two"])
    denied = openai.OpenAI(base_url=gateway.v1, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        denied.chat.completions.create(**CHAT)
    assert httpx.post(gateway.v1 + "/chat/completions", json=CHAT).status_code == 401
    allowed = openai.OpenAI(base_url=gateway.v1, api_key="k-two", max_retries=0)
    assert allowed.chat.completions.create(**CHAT).choices[0].message.content == "ok"
    assert [m.id for m in allowed.models.list().data] == [MODEL]
    with pytest.raises(openai.AuthenticationError):
        denied.models.list()


def test_connect_failure_retries_on_another_replica(start_gateway, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(upstreams=[dead, upstream.base_url], health={"interval_s": 60})
    for _ in range(4):
        assert ask(gateway, "fine").status_code == 200
    assert gateway.sample("taxgate_upstream_healthy", upstream=dead) == 0
    assert len(upstream.hits) == 4


def test_in_flight_limit_answers_503_with_retry_after(start_gateway, upstream):
    gateway = start_gateway(upstreams=[upstream.base_url], max_in_flight=1)

    async def two_at_once():
        async with httpx.AsyncClient(timeout=30) as client:

            async def second():
                await asyncio.sleep(0.5)  # while the slow one is in flight
                return await client.post(gateway.v1 + "/chat/completions", json=CHAT)

            return await asyncio.gather(
                client.post(
                    gateway.v1 + "/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "slow"}]}
                ),
                second(),
            )

    slow, rejected = asyncio.run(two_at_once())
    assert slow.status_code == 200
    assert rejected.status_code == 503 and int(rejected.headers["retry-after"]) >= 1
