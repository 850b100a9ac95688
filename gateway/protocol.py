"""A request as the proxy reads it: decoded and validated against its endpoint's request
model (``Endpoint.request_model``, defined with the endpoint in ``gateway.endpoints``).

The request is validated with pydantic but forwarded as the client sent it (unknown
fields such as vLLM's ``ignore_eos`` or ``guided_json`` pass through untouched); it
is re-encoded only when an input monitor redacted part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from gateway.errors import BadRequest

Route = str  # an endpoint's name (gateway.endpoints)


@dataclass(slots=True)
class ParsedRequest:
    route: Route
    body: dict[str, Any]
    model: str
    stream: bool


def parse_body(route: Route, model: type[BaseModel], raw: bytes) -> ParsedRequest:
    """Decode and validate as ``model`` (the endpoint's request model); BadRequest names
    the offending field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        validated = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise BadRequest(f"invalid request: {param}: {first['msg']}", param=param) from None
    return ParsedRequest(route, body, validated.model, validated.stream)
