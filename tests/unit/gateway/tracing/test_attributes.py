"""The request and upstream spans' attributes: GenAI and HTTP semantic conventions."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.tracing.attributes import (
    client_span_name,
    finish_reasons,
    request_end_attributes,
    request_start_attributes,
    server_span_name,
    stream_finish_reasons,
    upstream_attributes,
)


def answered(**overrides) -> RequestContext:
    ctx = RequestContext(request_id="rid", route="chat", started=10.0, model="tiny")
    ctx.upstream_sent, ctx.upstream_first, ctx.upstream_last = 10.1, 10.35, 11.0
    ctx.prompt_tokens, ctx.completion_tokens = 12, 40
    ctx.phases = {"parse": 0.001, "input_monitors": 0.004, "holdback": 0.02}
    for key, value in overrides.items():
        setattr(ctx, key, value)
    return ctx


def test_names_follow_the_conventions():
    assert server_span_name("/v1/chat/completions") == "POST /v1/chat/completions"
    assert client_span_name("chat", "tiny") == "chat tiny"
    assert client_span_name("completions", "tiny") == "text_completion tiny"
    assert request_start_attributes("responses", "/v1/responses", "rid") == {
        "http.request.method": "POST",
        "http.route": "/v1/responses",
        "url.path": "/v1/responses",
        "gen_ai.operation.name": "chat",
        "taxgate.request_id": "rid",
    }


def test_an_answered_request_carries_model_usage_and_finish_reasons():
    attributes = request_end_attributes(answered(finish_reasons=("stop",), flags=["judge"]))
    assert attributes == {
        "http.response.status_code": 200,
        "gen_ai.request.model": "tiny",
        "gen_ai.response.model": "tiny",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 40,
        "gen_ai.response.finish_reasons": ["stop"],
        "taxgate.flags": ["judge"],
        "taxgate.phase.parse_s": 0.001,
        "taxgate.phase.input_monitors_s": 0.004,
        "taxgate.phase.holdback_s": 0.02,
    }


def test_a_request_the_upstream_never_answered_has_no_response_attributes():
    ctx = RequestContext(request_id="rid", route="completions", started=1.0, model="tiny", status=502)
    attributes = request_end_attributes(ctx)
    assert attributes == {"http.response.status_code": 502, "gen_ai.request.model": "tiny", "error.type": "502"}


def test_the_upstream_span_has_time_to_first_byte_and_the_server():
    attributes = upstream_attributes(answered(), "http://vllm-0:8000", 200)
    assert attributes["server.address"] == "vllm-0" and attributes["server.port"] == 8000
    assert abs(attributes["taxgate.upstream.ttfb_s"] - 0.25) < 1e-9
    assert attributes["http.response.status_code"] == 200 and "error.type" not in attributes
    failed = upstream_attributes(RequestContext("rid", "chat", 1.0), "https://vllm", 503)
    assert failed["error.type"] == "503" and "server.port" not in failed
    assert "taxgate.upstream.ttfb_s" not in failed
    assert "server.address" not in upstream_attributes(answered(), None, None)  # never connected


def test_finish_reasons_of_a_whole_answer_as_sent():
    chat = b'{"choices": [{"finish_reason": "stop"}, {"finish_reason": "content_filter"}, {}]}'
    assert finish_reasons(chat) == ["stop", "content_filter"]
    incomplete = b'{"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}'
    assert finish_reasons(incomplete) == ["content_filter"]
    assert finish_reasons(b'{"status": "completed", "incomplete_details": null}') == ["completed"]
    assert finish_reasons(b"not json") == finish_reasons(b"[1]") == finish_reasons(b"{}") == []


def test_finish_reasons_of_a_stream_read_from_the_bytes_sent():
    chunk = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
    assert stream_finish_reasons(chunk + b"data: [DONE]\n\n") == ["length"]
    assert stream_finish_reasons(b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n') == []
    two = b'data: {"choices":[{"finish_reason": "stop"}]}\n\ndata: {"choices":[{"finish_reason":"content_filter"}]}\n\n'
    assert stream_finish_reasons(two) == ["stop", "content_filter"]
    done = b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed"}}\n\n'
    assert stream_finish_reasons(done) == ["completed"]
    cut = (
        b'data: {"type":"response.incomplete","response":{"status":"incomplete",'
        b'"incomplete_details":{"reason":"content_filter"}}}\n\n'
    )
    assert stream_finish_reasons(cut) == ["content_filter"]
    assert stream_finish_reasons(b'data: {"type":"response.created","response":{"status":"in_progress"}}') == []
