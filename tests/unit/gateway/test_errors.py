import orjson
import pytest

from gateway import errors


@pytest.mark.parametrize("error, status, code", [
    (errors.BadRequest("x"), 400, "invalid_request"),
    (errors.ContentBlocked("x"), 400, "content_blocked"),
    (errors.Unauthorized("x"), 401, "invalid_api_key"),
    (errors.ModelNotFound("x", param="model"), 404, "model_not_found"),
    (errors.PayloadTooLarge("x"), 413, "request_too_large"),
    (errors.Overloaded("x", retry_after_s=2.4), 503, "overloaded"),
    (errors.UpstreamError("x"), 502, "bad_gateway"),
    (errors.UpstreamUnavailable("x"), 503, "upstream_unavailable"),
    (errors.UpstreamTimeout("x"), 504, "upstream_timeout"),
])
def test_openai_error_shape(error, status, code):
    body = orjson.loads(error.body_bytes())
    assert error.status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code and body["error"]["message"] == "x"


def test_retry_after_header_rounds_up_to_at_least_one_second():
    assert errors.Overloaded("x", retry_after_s=0.2).headers() == {"retry-after": "1"}
    assert errors.Overloaded("x", retry_after_s=2.6).headers() == {"retry-after": "3"}
    assert errors.BadRequest("x").headers() == {}


def test_upstream_status_passes_body_through():
    error = errors.UpstreamStatus(422, b'{"error": "upstream said no"}', "application/json")
    assert error.status == 422 and error.body_bytes() == b'{"error": "upstream said no"}'


def test_sse_error_event_is_one_event():
    event = errors.sse_error_event(errors.UpstreamTimeout("slow"))
    assert event.startswith(b"data: {") and event.endswith(b"\n\n") and event.count(b"\n\n") == 1
