import orjson
import pytest

from gateway import errors
from gateway.client_timeouts import RequestTimeout
from gateway.drain import ShuttingDown

# Every typed error the gateway raises: (error, status, type, code).
TYPED = [
    (errors.GatewayError("x"), 500, "internal_error", None),
    (errors.BadRequest("x"), 400, "invalid_request_error", "invalid_request"),
    (errors.BadRequest("x", code="uncheckable_input"), 400, "invalid_request_error", "uncheckable_input"),
    (errors.ContentBlocked("x"), 400, "invalid_request_error", "content_blocked"),
    (errors.Unauthorized("x"), 401, "authentication_error", "invalid_api_key"),
    (errors.NotFound("x"), 404, "invalid_request_error", "not_found"),
    (errors.ModelNotFound("x", param="model"), 404, "invalid_request_error", "model_not_found"),
    (errors.MethodNotAllowed("x"), 405, "invalid_request_error", "method_not_allowed"),
    (RequestTimeout("x"), 408, "invalid_request_error", "request_timeout"),
    (errors.PayloadTooLarge("x"), 413, "invalid_request_error", "request_too_large"),
    (errors.Overloaded("x", retry_after_s=2.4), 503, "server_error", "overloaded"),
    (ShuttingDown("x", retry_after_s=1), 503, "server_error", "shutting_down"),
    (errors.UpstreamError("x"), 502, "upstream_error", "bad_gateway"),
    (errors.UpstreamUnavailable("x"), 503, "upstream_error", "upstream_unavailable"),
    (errors.UpstreamTimeout("x"), 504, "upstream_error", "upstream_timeout"),
]


@pytest.mark.parametrize("error, status, type_, code", TYPED)
def test_each_error_is_an_openai_shaped_response(error, status, type_, code):
    response = errors.error_response(error)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))
    assert orjson.loads(response.body) == {"error": {"message": "x", "type": type_, "param": error.param, "code": code}}


@pytest.mark.parametrize("error, status, type_, code", TYPED)
def test_each_error_is_one_sse_event_holding_the_same_object(error, status, type_, code):
    event = errors.error_event(error)
    assert event.startswith(b"data: {") and event.endswith(b"\n\n") and event.count(b"\n\n") == 1
    assert orjson.loads(event[6:]) == {"error": {"message": "x", "type": type_, "param": error.param, "code": code}}


def test_the_responses_event_is_typed_and_numbered():
    event = errors.error_event(errors.UpstreamTimeout("slow"), sequence_number=7)
    head, data = event.removesuffix(b"\n\n").split(b"\n")
    assert head == b"event: error" and data.startswith(b"data: ")
    assert orjson.loads(data[6:]) == {
        "type": "error",
        "code": "upstream_timeout",
        "message": "slow",
        "param": None,
        "sequence_number": 7,
    }
    # The first event of a stream is number 0: still the typed shape.
    assert errors.error_event(errors.UpstreamError("x"), sequence_number=0).startswith(b"event: error\n")


def test_headers_come_from_the_error():
    assert errors.error_response(errors.Overloaded("x", retry_after_s=0.2)).headers["retry-after"] == "1"
    assert errors.error_response(errors.Overloaded("x", retry_after_s=2.6)).headers["retry-after"] == "3"
    assert "retry-after" not in errors.error_response(errors.BadRequest("x")).headers
    assert errors.error_response(RequestTimeout("x")).headers["connection"] == "close"
    shutdown = errors.error_response(ShuttingDown("x", retry_after_s=1)).headers
    assert shutdown["connection"] == "close" and shutdown["retry-after"] == "1"


def test_the_response_never_sets_its_own_request_id():
    # gateway.request_id adds it to every response; a second copy would be a duplicate.
    assert "x-request-id" not in errors.error_response(errors.BadRequest("x")).headers


def test_upstream_status_passes_status_body_and_type_through():
    error = errors.UpstreamStatus(422, b'{"error": "upstream said no"}', "application/json")
    response = errors.error_response(error)
    assert response.status_code == 422 and response.body == b'{"error": "upstream said no"}'
    plain = errors.error_response(errors.UpstreamStatus(400, b"no", "text/plain; charset=utf-8"))
    assert plain.headers["content-type"] == "text/plain; charset=utf-8" and plain.body == b"no"


def test_building_a_response_leaves_the_error_as_it_was():
    error = errors.Overloaded("x", retry_after_s=1)
    before = (error.status, error.type, error.code, error.body_bytes(), error.headers())
    errors.error_response(error)
    errors.error_event(error)
    errors.error_event(error, sequence_number=3)
    assert (error.status, error.type, error.code, error.body_bytes(), error.headers()) == before
