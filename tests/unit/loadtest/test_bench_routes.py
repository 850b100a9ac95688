"""The bench's request shapes per route, and how a whole answer of each is read."""

from __future__ import annotations

import orjson

from loadtest.bench.routes import PATHS, request_body, whole_answer
from loadtest.sim.protocol import parse_chat
from loadtest.sim.responses_api import parse_responses, whole_body


def test_each_route_body_is_what_the_simulator_parses():
    for route, parse in (("chat", parse_chat), ("responses", parse_responses)):
        body = request_body(route, "m", "hello there", 7, stream=True, ignore_eos=True)
        parsed = parse(orjson.dumps(body))
        assert (parsed.echo_text, parsed.max_tokens, parsed.stream, parsed.ignore_eos) == (
            "hello there",
            7,
            True,
            True,
        ), route
    assert PATHS == {"chat": "/v1/chat/completions", "responses": "/v1/responses"}
    assert request_body("chat", "m", "x", 2, stream=True, ignore_eos=False)["stream_options"] == {"include_usage": True}


def test_whole_responses_answer_text_and_block():
    data = orjson.loads(whole_body("resp_1", "m", "hi [REDACTED:EMAIL]", "stop", 3, 4))
    assert whole_answer("responses", data) == ("hi [REDACTED:EMAIL]", "completed")
    data.update(status="incomplete", incomplete_details={"reason": "content_filter"})
    assert whole_answer("responses", data)[1] == "content_filter"
    chat = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
    assert whole_answer("chat", chat) == ("ok", "stop")
