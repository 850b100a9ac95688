"""OpenAI wire models: validation of what we read, and access to the texts monitors see.

The request is validated with pydantic but forwarded as the client sent it (unknown
fields such as vLLM's ``ignore_eos`` or ``guided_json`` pass through untouched); it
is re-encoded only when an input monitor redacted part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import BadRequest

Route = Literal["chat", "completions"]


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
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool = False


_MODELS = {"chat": ChatRequest, "completions": CompletionRequest}


@dataclass(slots=True)
class ParsedRequest:
    route: Route
    body: dict[str, Any]
    model: str
    stream: bool


def parse_request(route: Route, raw: bytes) -> ParsedRequest:
    """Decode and validate; BadRequest names the offending field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        validated = _MODELS[route].model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise BadRequest(f"invalid request: {param}: {first['msg']}", param=param) from None
    return ParsedRequest(route, body, validated.model, validated.stream)


def input_texts(request: ParsedRequest) -> list[str]:
    """What input monitors see: each message's text (chat) or each text prompt."""
    if request.route == "chat":
        return [_message_text(message.get("content")) for message in request.body["messages"]]
    prompt = request.body["prompt"]
    if isinstance(prompt, str):
        return [prompt]
    # Token-id prompts carry no text a monitor could read.
    return [item for item in prompt if isinstance(item, str)]


def replace_input_texts(request: ParsedRequest, texts: list[str]) -> bytes:
    """The request re-encoded with ``texts`` (same order as ``input_texts``)."""
    body = request.body
    if request.route == "chat":
        for message, text in zip(body["messages"], texts, strict=True):
            content = message.get("content")
            if isinstance(content, list):
                # Multi-part content: the redacted text replaces the text parts.
                parts = [part for part in content if part.get("type") != "text"]
                message["content"] = [{"type": "text", "text": text}, *parts]
            elif content is not None:
                message["content"] = text
    elif isinstance(body["prompt"], str):
        body["prompt"] = texts[0]
    else:
        replacements = iter(texts)
        body["prompt"] = [next(replacements) if isinstance(item, str) else item
                          for item in body["prompt"]]
    return orjson.dumps(body)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return ""


def choice_text(route: Route, choice: dict[str, Any], *, streamed: bool) -> str | None:
    """The text a choice (or a stream chunk's choice) carries, if any."""
    if route == "completions":
        return choice.get("text")
    holder = choice.get("delta" if streamed else "message") or {}
    content = holder.get("content")
    return content if isinstance(content, str) else None


def set_choice_text(route: Route, choice: dict[str, Any], text: str, *, streamed: bool) -> None:
    if route == "completions":
        choice["text"] = text
    else:
        choice.setdefault("delta" if streamed else "message", {})["content"] = text
