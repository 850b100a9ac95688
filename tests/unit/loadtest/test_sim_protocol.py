"""Request parsing and response bodies of the simulator's OpenAI API."""

from __future__ import annotations

import re

import orjson
import pytest

from loadtest.sim.protocol import (
    RequestError,
    error_body,
    parse_chat,
    parse_completion,
    request_id,
    resolve_max_tokens,
    response_body,
)
from loadtest.sim.tokens import CHAT_TOKENS_PER_MESSAGE


def body(**fields) -> bytes:
    return orjson.dumps(fields)


def test_chat_echoes_the_last_user_message_and_counts_all():
    req = parse_chat(
        body(
            model="m",
            max_tokens=5,
            stream=True,
            ignore_eos=True,
            stream_options={"include_usage": True},
            messages=[
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": "First."},
                {"role": "assistant", "content": "Ok."},
                {"role": "user", "content": "Second one."},
            ],
            some_unknown_field={"kept": "ignored"},
        )
    )
    assert req.echo_text == "Second one."
    assert req.prompt_tokens == 3 + 2 + 2 + 3 + 4 * CHAT_TOKENS_PER_MESSAGE
    assert (req.max_tokens, req.stream, req.ignore_eos, req.include_usage) == (5, True, True, True)


def test_chat_reads_text_parts_and_max_completion_tokens():
    req = parse_chat(
        body(
            max_completion_tokens=9,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}],
                }
            ],
        )
    )
    assert req.echo_text == "look" and req.max_tokens == 9 and req.model is None


def test_completion_prompt_forms():
    assert parse_completion(body(prompt="a b")).echo_text == "a b"
    assert parse_completion(body(prompt=["a b"])).prompt_tokens == 2
    assert parse_completion(body(prompt=[1, 2, 3])).prompt_tokens == 3
    # The legacy completions default.
    assert parse_completion(body(prompt="x")).max_tokens == 16
    assert parse_completion(body(prompt="x", max_tokens=None)).max_tokens is None


@pytest.mark.parametrize(
    "raw, param",
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (body(messages=[]), None),
        (body(messages="hi"), "body.messages"),
        (body(messages=[{"content": "no role"}]), "messages"),
        (body(messages=[{"role": "user", "content": 5}]), "messages"),
        (body(messages=[{"role": "user", "content": "x"}], max_tokens=0), "max_tokens"),
        (body(messages=[{"role": "user", "content": "x"}], max_tokens=True), "body.max_tokens"),
        (body(messages=[{"role": "user", "content": "x"}], n=2), "n"),
        (body(messages=[{"role": "user", "content": "x"}], stream_options={}), "stream_options"),
    ],
)
def test_bad_chat_requests_are_400(raw, param):
    with pytest.raises(RequestError) as info:
        parse_chat(raw)
    assert info.value.status == 400 and info.value.param == param


def test_batched_completion_prompts_are_refused():
    with pytest.raises(RequestError):
        parse_completion(body(prompt=["a", "b"]))


def test_max_tokens_defaults_to_what_fits_and_is_capped_like_vllm():
    req = parse_completion(body(prompt="one two three", max_tokens=None))
    assert resolve_max_tokens(req, 10) == 7
    # Fits the window alone but not with the prompt: cut at the window's end.
    assert resolve_max_tokens(parse_completion(body(prompt="one two three", max_tokens=8)), 10) == 7
    with pytest.raises(RequestError, match="cannot be greater than max_model_len"):
        resolve_max_tokens(parse_completion(body(prompt="one", max_tokens=11)), 10)
    with pytest.raises(RequestError, match="maximum context length"):
        resolve_max_tokens(parse_completion(body(prompt="a b c d")), 4)


def test_error_body_is_openai_shaped():
    err = RequestError(404, "nope", "NotFoundError", "model")
    assert orjson.loads(error_body(err)) == {
        "error": {"message": "nope", "type": "NotFoundError", "param": "model", "code": 404}
    }


def test_chat_and_completion_bodies():
    chat = orjson.loads(response_body("chat", "chatcmpl-1", 1, "m", "hi", "stop", 4, 1, "fp"))
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["content"] == "hi"
    assert chat["usage"] == {
        "prompt_tokens": 4,
        "total_tokens": 5,
        "completion_tokens": 1,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    assert chat["system_fingerprint"] == "fp"
    completion = orjson.loads(response_body("completion", "cmpl-1", 1, "m", "hi", "length", 4, 1, "fp"))
    assert completion["choices"][0]["text"] == "hi"
    assert completion["choices"][0]["finish_reason"] == "length"


def test_request_ids_look_like_vllm_s():
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{16}", request_id("chat"))
    assert re.fullmatch(r"cmpl-[0-9a-f]{16}", request_id("completion"))
