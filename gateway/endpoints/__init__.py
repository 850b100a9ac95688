"""The API endpoints the gateway serves, one module each (``chat``, ``completions``,
``responses``; the shared parts in ``base`` and ``choices``). Adding an endpoint means
adding a module with its ``Endpoint`` value and listing it here: this table is the one
place the routes are written.
"""

from __future__ import annotations

from gateway.endpoints.base import Endpoint
from gateway.endpoints.chat import CHAT
from gateway.endpoints.completions import COMPLETIONS
from gateway.endpoints.responses import RESPONSES
from gateway.input_text import InputView
from gateway.protocol import ParsedRequest, parse_body

__all__ = ["ENDPOINTS", "Endpoint", "by_path", "parse_request", "read_input"]

ENDPOINTS: dict[str, Endpoint] = {endpoint.name: endpoint for endpoint in (CHAT, COMPLETIONS, RESPONSES)}


def by_path() -> dict[str, Endpoint]:
    return {endpoint.path: endpoint for endpoint in ENDPOINTS.values()}


def parse_request(name: str, raw: bytes) -> ParsedRequest:
    """Decode and validate a request to the endpoint ``name``; BadRequest names the field."""
    endpoint = ENDPOINTS[name]
    return parse_body(endpoint.name, endpoint.request_model, raw)


def read_input(request: ParsedRequest, *, check_tools: bool) -> InputView:
    """The texts input monitors see of a parsed request (``Endpoint.read_input``)."""
    return ENDPOINTS[request.route].read_input(request.body, check_tools=check_tools)
