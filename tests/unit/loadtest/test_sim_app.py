"""The simulator app in-process (ASGI transport, no server): routes, bodies, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
from prometheus_client import CollectorRegistry

from loadtest.sim import SimSettings, create_sim_app

CHAT = "/v1/chat/completions"


@asynccontextmanager
async def client_for(**overrides) -> AsyncIterator[httpx.AsyncClient]:
    settings = SimSettings(**{"profile": "instant", "model": "sim", **overrides})
    app = create_sim_app(settings, registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            yield client


def events(text: str) -> list[dict | str]:
    out: list[dict | str] = []
    for block in text.split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def chat(content: str, **fields) -> dict:
    return {"model": "sim", "messages": [{"role": "user", "content": content}], **fields}


async def test_health_models_and_metrics():
    async with client_for() as client:
        assert (await client.get("/health")).status_code == 200
        models = (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["sim", "sim-guard"]
        metrics = await client.get("/metrics")
        assert 'vllm:num_requests_running{engine="0",model_name="sim"} 0.0' in metrics.text


async def test_non_streamed_chat_echoes_with_usage():
    async with client_for() as client:
        body = (await client.post(CHAT, json=chat("Hello there."))).json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert (message["role"], message["content"]) == ("assistant", "Hello there.")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3


async def test_streamed_chat_sequence_like_vllm():
    async with client_for() as client:
        response = await client.post(
            CHAT, json=chat("One two three.", stream=True, stream_options={"include_usage": True})
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    assert got[-1] == "[DONE]"
    role, *content, final, usage, _ = got
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in content] == ["One", " two", " three"]
    assert final["choices"][0]["delta"]["content"] == "."
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
    assert len({e["id"] for e in got[:-1]}) == 1


async def test_ignore_eos_gives_exactly_max_tokens():
    async with client_for() as client:
        body = (
            await client.post(
                "/v1/completions", json={"model": "sim", "prompt": "hi", "max_tokens": 25, "ignore_eos": True}
            )
        ).json()
    assert body["usage"]["completion_tokens"] == 25
    assert body["choices"][0]["finish_reason"] == "length"


async def test_streamed_completion_without_usage():
    async with client_for() as client:
        response = await client.post("/v1/completions", json={"prompt": "a b c", "max_tokens": 2, "stream": True})
    got = events(response.text)
    assert [e["choices"][0]["text"] for e in got[:-1]] == ["a", " b"]
    assert got[-2]["choices"][0]["finish_reason"] == "length" and "usage" not in got[-2]


async def test_api_errors_are_openai_shaped():
    async with client_for() as client:
        cases: list[tuple[Callable, int, str]] = [
            (lambda: client.post(CHAT, json=chat("x", model="other")), 404, "NotFoundError"),
            (lambda: client.post(CHAT, content=b"{oops"), 400, "Bad Request"),
            (lambda: client.post(CHAT, json={"messages": []}), 400, "BadRequestError"),
        ]
        for call, status, err_type in cases:
            response = await call()
            assert response.status_code == status
            error = response.json()["error"]
            assert error["type"] == err_type and error["code"] == status and error["message"]


async def test_unknown_routes_answer_like_vllm():
    async with client_for() as client:
        missing = await client.get("/v1/nothing")
        wrong_method = await client.get(CHAT)
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}


async def test_corpus_mode_says_corpus_texts(tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "from the corpus", "label": "benign"}\n')
    async with client_for(output_mode="corpus", corpus_path=corpus) as client:
        body = (await client.post(CHAT, json=chat("ignored"))).json()
    assert body["choices"][0]["message"]["content"] == "from the corpus"


async def test_random_mode_is_reproducible_per_seed():
    said = []
    for _ in range(2):
        async with client_for(output_mode="random", seed=4) as client:
            said.append((await client.post(CHAT, json=chat("x", max_tokens=12))).json())
    assert said[0]["choices"][0]["message"] == said[1]["choices"][0]["message"]


async def test_tokenize_and_detokenize_like_vllm():
    async with client_for() as client:
        tokens = await client.post("/tokenize", json={"model": "sim", "prompt": "Hi there"})
        body = tokens.json()
        assert body["count"] == len(body["tokens"]) == 2 and body["max_model_len"] > 0
        back = await client.post("/detokenize", json={"model": "sim", "tokens": body["tokens"]})
        assert back.json() == {"prompt": "Hi there"}
        # A token-id prompt in echo mode says its text back, and counts its ids.
        echoed = (
            await client.post("/v1/completions", json={"model": "sim", "prompt": body["tokens"], "max_tokens": 5})
        ).json()
        assert echoed["choices"][0]["text"] == "Hi there"
        assert echoed["usage"]["prompt_tokens"] == 2
        bad = await client.post("/detokenize", json={"model": "sim", "tokens": [7]})
        assert bad.status_code == 400 and "out of vocabulary" in bad.json()["error"]["message"]
        wrong = await client.post("/detokenize", json={"model": "other", "tokens": []})
        assert wrong.status_code == 404
        shape = await client.post("/tokenize", json={"messages": []})
        assert shape.status_code == 400
