"""Output monitors see every text a client reads: content, reasoning, tool-call
arguments, logprobs, completions text. A secret in any field never leaves."""

from __future__ import annotations

import httpx
import orjson
import pytest

from gateway.endpoints.completions import CompletionFormat
from monitors.base import Span
from tests.unit.gateway.test_proxy import gateway, serving

SECRET = "bob@example.com"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def logprobs_of(text: str) -> dict:
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    return {
        "content": [
            {
                "token": t,
                "logprob": -0.1,
                "bytes": list(t.encode()),
                "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": []}],
            }
            for t in tokens
        ]
    }


def whole_answer() -> dict:
    content = f"write to {SECRET} now"
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "logprobs": logprobs_of(content),
                "message": {
                    "role": "assistant",
                    "content": content,
                    "reasoning_content": f"the user is {SECRET}",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "send", "arguments": orjson.dumps({"to": SECRET}).decode()},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 9, "total_tokens": 10},
    }


def streamed_answer() -> list[bytes]:
    def event(delta, finish=None, logprobs=None):
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return (
            b"data: "
            + orjson.dumps({"id": "s", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})
            + b"\n\n"
        )

    reads = [event({"role": "assistant", "content": ""})]
    for piece in ["the user ", "is bob@exa", "mple.com ok"]:
        reads.append(event({"reasoning_content": piece}))
    for piece in ["write to ", "bob@", "example.com", " now"]:
        reads.append(event({"content": piece}, logprobs=logprobs_of(piece)))
    reads.append(
        event(
            {
                "tool_calls": [
                    {"index": 0, "id": "t1", "type": "function", "function": {"name": "send", "arguments": ""}}
                ]
            }
        )
    )
    for piece in ['{"to": "bob', "@example.", 'com"}']:
        reads.append(event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    reads.append(event({}, finish="tool_calls"))
    return reads + [b"data: [DONE]\n\n"]


def upstream(stream: bool):
    async def body():
        for read in streamed_answer():
            yield read

    def chat(request):
        if stream:
            return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=whole_answer())

    return serving(chat)


@pytest.mark.parametrize("stream", [False, True])
async def test_redact_masks_the_secret_in_every_field(tmp_path, stream):
    monitors = [{"name": "pii", "stages": ["output"], "action": "redact"}]
    async with gateway(upstream(stream), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream, "logprobs": True})
    assert response.status_code == 200
    assert "bob" not in response.text and "example.com" not in response.text
    assert "[REDACTED:EMAIL]" in response.text
    if stream:
        chunks = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        deltas = [c["choices"][0]["delta"] for c in chunks]
        content = "".join(d.get("content") or "" for d in deltas)
        reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
        arguments = "".join(
            call["function"].get("arguments") or "" for d in deltas for call in d.get("tool_calls") or ()
        )
        tokens = "".join(
            entry["token"] for c in chunks for entry in (c["choices"][0].get("logprobs") or {}).get("content", ())
        )
        assert content == "write to [REDACTED:EMAIL] now"
        assert reasoning == "the user is [REDACTED:EMAIL] ok"
        assert arguments == '{"to": "[REDACTED:EMAIL]"}'
        assert tokens == content  # logprobs match the text the client got
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        message = response.json()["choices"][0]["message"]
        assert message["content"] == "write to [REDACTED:EMAIL] now"
        assert message["tool_calls"][0]["function"]["arguments"] == '{"to":"[REDACTED:EMAIL]"}'


@pytest.mark.parametrize("stream", [False, True])
async def test_block_on_a_tool_argument_blocks_the_choice(tmp_path, stream):
    monitors = [{"name": "blocklist", "stages": ["output"], "action": "block", "keywords": ["example.com"]}]
    async with gateway(upstream(stream), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert "example.com" not in response.text
    assert "content_filter" in response.text


async def test_fields_option_leaves_reasoning_alone(tmp_path):
    monitors = [{"name": "pii", "stages": ["output"], "action": "redact", "fields": ["content"]}]
    async with gateway(upstream(False), tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "write to [REDACTED:EMAIL] now"
    assert SECRET in message["reasoning_content"]


def test_choice_fields_of_a_completion_and_its_logprobs():
    choice = {
        "index": 0,
        "text": "hi bob",
        "logprobs": {"tokens": ["hi", " bob"], "top_logprobs": [{"hi": -1}, {" bob": -1}]},
    }
    completions = CompletionFormat()
    assert completions.fields(choice, streamed=False) == [
        ("text", "hi bob"),
        ("logprobs", "hi bob"),
    ]
    completions.redact_logprobs(choice, [Span(3, 6, "NAME")])
    assert choice["logprobs"]["tokens"] == ["hi", "[REDACTED:NAME]"]
    assert choice["logprobs"]["top_logprobs"][1] == {"[REDACTED:NAME]": 0.0}
