"""What input monitors read of a Responses API request, and redaction in place."""

from __future__ import annotations

import orjson
import pytest

from gateway.endpoints import parse_request, read_input
from gateway.errors import BadRequest
from tests.unit.gateway.test_input_text import mask


def responses(body: dict, *, check_tools: bool = True):
    parsed = parse_request("responses", orjson.dumps({"model": "m", **body}))
    return parsed, read_input(parsed, check_tools=check_tools)


def test_instructions_and_a_string_input_are_two_texts():
    parsed, view = responses({"instructions": "Be brief.", "input": "Hello", "stream": True, "vendor_field": {"x": 1}})
    assert parsed.stream and parsed.model == "m"
    assert view.texts == ["Be brief.", "Hello"]
    assert view.uncheckable == []


def test_one_text_per_item_messages_calls_outputs_and_reasoning():
    _, view = responses(
        {
            "input": [
                {"role": "system", "content": "sys"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look at"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                        {"type": "input_text", "text": "this"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                },
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "result text"},
                {"type": "item_reference", "id": "msg_1"},
            ],
            "tools": [{"type": "function", "name": "lookup", "description": "Finds things"}],
        }
    )
    assert view.texts == [
        "sys",
        "look at\nthis",
        "ok",
        "thought",
        'lookup\n{"q":1}',
        "result text",
        "function\nlookup\nFinds things",
    ]
    assert [(u.kind, u.param) for u in view.uncheckable] == [("image", "input.1.content.1"), ("other", "input.6")]


def test_tools_are_left_out_without_check_tools():
    _, view = responses({"input": "hi", "tools": [{"type": "function", "name": "f"}]}, check_tools=False)
    assert view.texts == ["hi"]


@pytest.mark.parametrize(
    "body",
    [
        {"input": 3},
        {"input": "x", "instructions": 5},
        {"input": ["not an item"]},
        {"input": [{"role": "user", "content": 5}]},
        {"input": [{"role": "user", "content": ["not a part"]}]},
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
        {"input": [{"type": "function_call_output", "call_id": "c", "output": None}]},
        {"input": "x"} | {"model": ""},
    ],
)
def test_wrong_shapes_are_bad_requests(body):
    with pytest.raises(BadRequest):
        responses(body)


def test_redaction_rewrites_the_field_in_place_and_keeps_the_rest():
    parsed, view = responses(
        {
            "instructions": "Call 555-0100",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "mail a@b.c now"}]},
                {"type": "function_call_output", "call_id": "c", "output": "ssn 123"},
            ],
            "store": False,
        }
    )
    body = orjson.loads(view.redacted_body(parsed.body, mask(view, 1, "a@b.c")))
    assert body["input"][0]["content"][0]["text"] == "mail [REDACTED:X] now"
    assert body["instructions"] == "Call 555-0100" and body["store"] is False
    again = orjson.loads(view.redacted_body(parsed.body, mask(view, 2, "123")))
    assert again["input"][1]["output"] == "ssn [REDACTED:X]"
    first = orjson.loads(view.redacted_body(parsed.body, mask(view, 0, "555-0100")))
    assert first["instructions"] == "Call [REDACTED:X]"
