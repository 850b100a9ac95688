"""Typed gateway errors and their one mapping to what the client sees: ``error_response``
(an HTTP answer, OpenAI shape) before a response started, ``error_event`` (one SSE event)
after a stream started. Nothing else turns an error into bytes for a client; a different
status is a different error class, never a handler's edit of an error object."""

from __future__ import annotations

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """An error the client sees as ``{"error": {"message", "type", "param", "code"}}``."""

    status = 500
    type = "internal_error"
    code: str | None = None
    content_type = "application/json"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after_s)))}


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContentBlocked(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "content_blocked"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Overloaded(GatewayError):
    status = 503
    type = "server_error"
    code = "overloaded"


class UpstreamError(GatewayError):
    """The upstream refused, reset, or answered something that is not the protocol."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamUnavailable(UpstreamError):
    """No upstream can take the request (all down or ejected)."""

    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamStatus(GatewayError):
    """The upstream answered an HTTP error; its status and body are passed on as they are."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.raw_body = body
        self.content_type = content_type

    def body_bytes(self) -> bytes:
        return self.raw_body


def error_response(error: GatewayError) -> Response:
    """The HTTP answer to ``error``, on every route: its status, body and headers
    (``x-request-id`` is added by ``gateway.request_id``, as on every response)."""
    return Response(
        error.body_bytes(), status_code=error.status, media_type=error.content_type, headers=error.headers()
    )


def error_event(error: GatewayError, sequence_number: int | None = None) -> bytes:
    """The one SSE event that ends a stream which failed after it started.

    Without ``sequence_number``: ``data: {"error": {...}}``, the event of the chat and
    completion streams, and of a Responses stream relayed raw (no output monitor: the
    relay reads no event types, so it numbers none). With it: the Responses API's own
    typed ``event: error``, numbered after the last event the client was sent."""
    if sequence_number is None:
        return b"data: " + error.body_bytes() + b"\n\n"
    event = {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "sequence_number": sequence_number,
    }
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
