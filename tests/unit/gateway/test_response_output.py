"""The texts of a Responses object and of its stream events, and a Responses stream with
reasoning and a function call through the monitored relay."""

from __future__ import annotations

import orjson
import pytest

from gateway.answer import ProtocolViolation
from gateway.endpoints.response_output import block_response, response_texts, set_text
from gateway.endpoints.responses import event_texts
from tests.unit.gateway.test_proxy import gateway
from tests.unit.gateway.test_proxy_responses import PII_OUT, typed, upstream

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "status": "completed",
    "output": [
        {
            "type": "reasoning",
            "id": "rs",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "content": [{"type": "reasoning_text", "text": "think"}],
        },
        {"type": "function_call", "id": "fc", "call_id": "c", "name": "send", "arguments": '{"to": "a"}'},
        {"type": "web_search_call", "id": "ws", "status": "completed"},
        {
            "type": "message",
            "id": "m",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "hello", "annotations": [], "logprobs": [{"t": 1}]},
                {"type": "refusal", "refusal": "no"},
            ],
        },
    ],
}


def copy() -> dict:
    return orjson.loads(orjson.dumps(RESPONSE))


def test_every_text_with_its_field_id_kind_and_path():
    texts = response_texts(copy())
    assert [(t.field, t.kind, t.path, t.text) for t in texts] == [
        ((0, "summary", 0), "reasoning", ("output", 0, "summary", 0, "text"), "plan"),
        ((0, "reasoning_content", 0), "reasoning", ("output", 0, "content", 0, "text"), "think"),
        ((1, "name", 0), "tool_calls", ("output", 1, "name"), "send"),
        ((1, "arguments", 0), "tool_calls", ("output", 1, "arguments"), '{"to": "a"}'),
        ((3, "content", 0), "content", ("output", 3, "content", 0, "text"), "hello"),
        ((3, "content", 1), "refusal", ("output", 3, "content", 1, "refusal"), "no"),
    ]


def test_set_text_drops_the_logprobs_beside_it_and_block_replaces_the_output():
    body = copy()
    set_text(body, ("output", 3, "content", 0, "text"), "[X]")
    assert body["output"][3]["content"][0] == {"type": "output_text", "text": "[X]", "annotations": [], "logprobs": []}
    block_response(body, "sorry")
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "content_filter"}
    assert [t.text for t in response_texts(body)] == ["sorry"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"output": None},
        {"output": [3]},
        {"output": [{"type": "message", "content": {}}]},
        {"output": [{"type": "function_call", "arguments": 1}]},
    ],
)
def test_wrong_shapes_are_protocol_violations(body):
    with pytest.raises(ProtocolViolation):
        response_texts(body)


def test_event_texts_name_the_same_fields_as_the_deltas():
    done = {"type": "response.output_text.done", "output_index": 2, "content_index": 1, "text": "all"}
    part = {
        "type": "response.content_part.done",
        "output_index": 2,
        "content_index": 1,
        "part": {"type": "output_text", "text": "all"},
    }
    args = {"type": "response.function_call_arguments.done", "output_index": 0, "arguments": "{}"}
    assert [t.field for t in event_texts(done)] == [(2, "content", 1)]
    assert [(t.field, t.path) for t in event_texts(part)] == [((2, "content", 1), ("part", "text"))]
    assert [t.field for t in event_texts(args)] == [(0, "arguments", 0)]
    assert event_texts({"type": "response.in_progress"}) == []
    with pytest.raises(ProtocolViolation):
        event_texts({"type": "response.output_text.done", "output_index": "0", "content_index": 0, "text": "x"})


def event(kind: str, **fields) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


async def test_reasoning_and_function_call_arguments_are_redacted_streamed(tmp_path):
    secret = "bob@example.com"
    call = {"type": "function_call", "id": "fc", "call_id": "c", "name": "send", "arguments": ""}
    final = {
        "id": "r",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "reasoning",
                "id": "rs",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": f"mail {secret}"}],
            },
            {**call, "arguments": f'{{"to": "{secret}"}}'},
        ],
        "usage": {"input_tokens": 2, "output_tokens": 5},
    }
    reads = [
        event("response.created", response={**final, "status": "in_progress", "output": []}),
        event("response.reasoning_text.delta", output_index=0, content_index=0, delta="mail bob@"),
        event("response.reasoning_text.delta", output_index=0, content_index=0, delta="example.com"),
        event("response.reasoning_text.done", output_index=0, content_index=0, text=f"mail {secret}"),
        event("response.output_item.added", output_index=1, item=call),
        event("response.function_call_arguments.delta", output_index=1, delta='{"to": "bob@exam'),
        event("response.function_call_arguments.delta", output_index=1, delta='ple.com"}'),
        event("response.function_call_arguments.done", output_index=1, arguments=f'{{"to": "{secret}"}}'),
        event("response.completed", response=final),
    ]
    async with gateway(upstream(reads), tmp_path, monitors=PII_OUT) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
        assert client.registry.get_sample_value("taxgate_completion_tokens_total", {"model": "m"}) == 5
    assert secret not in response.text
    events = typed(response.text)
    reasoning = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert reasoning == "mail [REDACTED:EMAIL]"
    assert arguments == '{"to": "[REDACTED:EMAIL]"}'
    last = events[-1]["response"]["output"]
    assert last[0]["content"][0]["text"] == reasoning
    assert last[1]["arguments"] == arguments
    assert [e["type"] for e in events][-1] == "response.completed"


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
async def test_a_text_never_streamed_is_checked_where_it_appears(tmp_path, mode):
    """A function call's name comes whole in ``output_item.added``: checked there."""
    call = {"type": "function_call", "id": "fc", "call_id": "c", "name": "forbiddenword", "arguments": ""}
    reads = [
        event("response.created", response={"id": "r", "status": "in_progress", "output": []}, sequence_number=0),
        event("response.output_item.added", output_index=0, item=call, sequence_number=1),
        event("response.completed", response={"id": "r", "status": "completed", "output": [call]}, sequence_number=2),
    ]
    monitors = [{"name": "blocklist", "stages": ["output"], "keywords": ["forbiddenword"]}]
    async with gateway(upstream(reads), tmp_path, monitors=monitors, streaming={"mode": mode}) as client:
        response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    assert "forbiddenword" not in response.text
    events = typed(response.text)
    assert [e["type"] for e in events] == ["response.created", "response.incomplete"]
    assert events[-1]["sequence_number"] == 2
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}
