"""The simulator's ``/v1/responses`` in-process: the whole object and the typed events."""

from __future__ import annotations

import orjson

from tests.unit.loadtest.test_sim_app import client_for

RESPONSES = "/v1/responses"


def typed_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = orjson.loads(data_line[len("data: ") :])
        assert data["type"] == event_line[len("event: ") :]
        out.append((data["type"], data))
    return out


async def test_whole_response_echoes_the_last_user_input():
    request = {
        "model": "sim",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello there."}]}],
    }
    async with client_for() as client:
        body = (await client.post(RESPONSES, json=request)).json()
    assert (body["object"], body["status"]) == ("response", "completed")
    [message] = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0] == {"type": "output_text", "text": "Hello there.", "annotations": [], "logprobs": []}
    assert body["usage"]["output_tokens"] == 3
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + 3


async def test_streamed_response_sends_the_typed_event_sequence():
    async with client_for() as client:
        reply = await client.post(RESPONSES, json={"model": "sim", "input": "One two three.", "stream": True})
    events = typed_events(reply.text)
    kinds = [kind for kind, _ in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [data["delta"] for kind, data in events if kind == "response.output_text.delta"]
    assert "".join(deltas) == "One two three."
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    completed = events[-1][1]["response"]
    assert completed["output"][0]["content"][0]["text"] == "One two three."
    assert completed["usage"]["output_tokens"] == 4  # One, two, three, "."


async def test_max_output_tokens_ends_incomplete():
    async with client_for() as client:
        body = (
            await client.post(RESPONSES, json={"model": "sim", "input": "a b c d e f", "max_output_tokens": 2})
        ).json()
        bad = await client.post(RESPONSES, json={"model": "sim", "input": 3})
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert bad.status_code == 400
