"""The wire models: what is accepted, what is refused (and the field named), and that the
body forwarded is the one the client sent."""

from __future__ import annotations

import orjson
import pytest

from gateway.endpoints import parse_request
from gateway.errors import BadRequest
from gateway.protocol import ParsedRequest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refused(route, raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_request(route, raw)
    assert info.value.status == 400 and info.value.code == "invalid_request"
    return info.value


def test_chat_request_is_parsed_and_kept_as_sent():
    body = {
        **CHAT,
        "stream": True,
        "ignore_eos": True,
        "guided_json": {"type": "object"},
        "messages": [{"role": "user", "content": "hi", "name": "ann"}],
    }
    parsed = parse_request("chat", orjson.dumps(body))
    assert parsed == ParsedRequest("chat", body, "m", True)
    # Unknown fields pass through untouched, in the client's order.
    assert list(parsed.body) == ["model", "messages", "stream", "ignore_eos", "guided_json"]


def test_stream_defaults_to_false():
    assert parse_request("chat", orjson.dumps(CHAT)).stream is False


@pytest.mark.parametrize("content", [None, "text", [{"type": "text", "text": "hi"}]])
def test_chat_content_shapes(content):
    body = {"model": "m", "messages": [{"role": "assistant", "content": content}]}
    assert parse_request("chat", orjson.dumps(body)).body == body


@pytest.mark.parametrize("prompt", ["one", ["one", "two"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompt_shapes(prompt):
    parsed = parse_request("completions", orjson.dumps({"model": "m", "prompt": prompt}))
    assert (parsed.route, parsed.model, parsed.body["prompt"]) == ("completions", "m", prompt)


def test_completion_with_prompt_embeds_only():
    body = {"model": "m", "prompt_embeds": "AAAA"}
    assert parse_request("completions", orjson.dumps(body)).body == body


@pytest.mark.parametrize(
    "body", [{"model": "m"}, {"model": "m", "prompt_embeds": ""}, {"model": "m", "prompt_embeds": []}]
)
def test_completion_needs_a_prompt_or_embeds(body):
    error = refused("completions", orjson.dumps(body))
    assert error.message.endswith(": Value error, either prompt or prompt_embeds must be given")
    assert error.param is None


@pytest.mark.parametrize("prompt", [[1.0, 2.0], [True], [[1, True]], ["a", 1]])
def test_completion_token_ids_are_strict(prompt):
    error = refused("completions", orjson.dumps({"model": "m", "prompt": prompt}))
    assert error.param is not None and error.param.startswith("prompt")


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "hi"},
        {"model": "m", "input": [{"role": "user", "content": "hi"}], "instructions": "be brief", "stream": True},
    ],
)
def test_responses_request(body):
    parsed = parse_request("responses", orjson.dumps(body))
    assert parsed == ParsedRequest("responses", body, "m", body.get("stream", False))


def test_body_that_is_not_json():
    error = refused("chat", b'{"model": ')
    assert error.message.startswith("request body is not valid JSON: ")
    assert error.param is None
    assert refused("chat", b"\xff").message.startswith("request body is not valid JSON: ")


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"3", b"null"])
def test_body_must_be_an_object(raw):
    error = refused("chat", raw)
    assert (error.message, error.param) == ("request body must be a JSON object", None)


@pytest.mark.parametrize(
    "route, body, param, message",
    [
        ("chat", {"messages": CHAT["messages"]}, "model", "Field required"),
        ("chat", {**CHAT, "model": ""}, "model", "String should have at least 1 character"),
        (
            "chat",
            {"model": "m", "messages": []},
            "messages",
            "List should have at least 1 item after validation, not 0",
        ),
        ("chat", {"model": "m", "messages": [{"content": "x"}]}, "messages.0.role", "Field required"),
        ("chat", {**CHAT, "stream": "maybe"}, "stream", "Input should be a valid boolean, unable to interpret input"),
        ("completions", {"prompt": "x"}, "model", "Field required"),
        ("responses", {"model": "m"}, "input", "Field required"),
    ],
)
def test_invalid_field_is_named(route, body, param, message):
    error = refused(route, orjson.dumps(body))
    assert error.param == param
    assert error.message == f"invalid request: {param}: {message}"
    assert error.body() == {
        "error": {"message": error.message, "type": "invalid_request_error", "param": param, "code": "invalid_request"}
    }


def test_a_chat_body_is_not_a_completion():
    # The route picks the model: a chat body on /v1/completions lacks a prompt.
    refused("completions", orjson.dumps(CHAT))
    refused("chat", orjson.dumps({"model": "m", "prompt": "x"}))
