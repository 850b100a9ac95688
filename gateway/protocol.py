"""OpenAI wire models: validation of what we read, and access to the texts monitors see.

The request is validated with pydantic but forwarded as the client sent it (unknown
fields such as vLLM's ``ignore_eos`` or ``guided_json`` pass through untouched); it
is re-encoded only when an input monitor redacted part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from gateway.errors import BadRequest

Route = str  # an endpoint's name (gateway.endpoints)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    # Token ids strictly: a lax ``[1.0, true]`` would be checked as one thing and read by
    # the upstream as another.
    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]] | None = None
    # vLLM's base64 prompt embeddings (``--enable-prompt-embeds``): kept to be refused
    # or counted by the input check (gateway.uncheckable), never read.
    prompt_embeds: Any = None
    stream: bool = False

    @model_validator(mode="after")
    def _prompt_or_embeds(self) -> CompletionRequest:
        if self.prompt is None and self.prompt_embeds in (None, [], ""):
            raise ValueError("either prompt or prompt_embeds must be given")
        return self


class ResponsesRequest(BaseModel):
    """The Responses API request: ``input`` is a string or a list of items (messages,
    function call outputs, ...), read by ``gateway.input_text``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    stream: bool = False


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
