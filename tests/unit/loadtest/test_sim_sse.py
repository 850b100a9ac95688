"""SSE chunks: byte-built for speed, but they must parse to vLLM's exact shapes."""

from __future__ import annotations

import orjson
import pytest

from loadtest.sim.sse import DONE, ChunkEncoder


def parse(chunk: bytes) -> list[dict]:
    assert chunk.endswith(b"\n\n")
    events = chunk.split(b"\n\n")[:-1]
    assert all(event.startswith(b"data: ") for event in events)
    return [orjson.loads(event[len(b"data: ") :]) for event in events]


HEADER = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


@pytest.fixture
def chat() -> ChunkEncoder:
    return ChunkEncoder("chat", "chatcmpl-1", 7, "m", prompt_tokens=12, system_fingerprint="fp")


def test_role_chunk(chat):
    assert parse(chat.role()) == [
        {
            **HEADER,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            ],
            "prompt_token_ids": None,
            "prompt_text": None,
        }
    ]


def test_content_chunk_escapes_text(chat):
    [event] = parse(chat.text(' "quoted"\n\u00e9'))
    assert event == {
        **HEADER,
        "choices": [
            {
                "index": 0,
                "delta": {"content": ' "quoted"\n\u00e9'},
                "logprobs": None,
                "finish_reason": None,
                "token_ids": None,
            }
        ],
    }
    assert list(event) == ["id", "object", "created", "model", "choices"]


def test_final_chunk_carries_last_text_finish_reason_and_fingerprint(chat):
    [event] = parse(chat.final(" end", "length"))
    assert event["choices"] == [
        {
            "index": 0,
            "delta": {"content": " end"},
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
            "token_ids": None,
        }
    ]
    assert event["system_fingerprint"] == "fp"


def test_usage_chunk_takes_the_fingerprint_when_usage_is_on():
    enc = ChunkEncoder("chat", "chatcmpl-1", 7, "m", prompt_tokens=12, include_usage=True, system_fingerprint="fp")
    [final] = parse(enc.final("x", "stop"))
    assert "system_fingerprint" not in final
    [event] = parse(enc.usage(5))
    assert event == {
        **HEADER,
        "choices": [],
        "system_fingerprint": "fp",
        "usage": {"prompt_tokens": 12, "total_tokens": 17, "completion_tokens": 5},
    }


def test_continuous_usage_rides_on_every_chunk():
    enc = ChunkEncoder("chat", "chatcmpl-1", 7, "m", prompt_tokens=3, continuous_usage=True)
    [role] = parse(enc.role())
    [text] = parse(enc.text("a", 1))
    assert role["usage"]["completion_tokens"] == 0
    assert text["usage"] == {
        "prompt_tokens": 3,
        "total_tokens": 4,
        "completion_tokens": 1,
        "completion_tokens_details": None,
    }


def test_completion_chunks():
    enc = ChunkEncoder("completion", "cmpl-1", 7, "m")
    [event] = parse(enc.text("hi"))
    assert event == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": "hi",
                "logprobs": None,
                "finish_reason": None,
                "stop_reason": None,
                "prompt_token_ids": None,
                "token_ids": None,
            }
        ],
    }
    [final] = parse(enc.final("!", "stop"))
    assert final["choices"][0]["finish_reason"] == "stop"


def test_done_marker():
    assert DONE == b"data: [DONE]\n\n"


def test_unknown_kind():
    with pytest.raises(ValueError):
        ChunkEncoder("embedding", "x", 0, "m")
