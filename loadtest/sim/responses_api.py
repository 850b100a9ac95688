"""The OpenAI Responses API (``POST /v1/responses``) as far as the simulator needs it:
parse a request, build the whole response object, and encode the typed event stream
(``event: response.output_text.delta`` lines with the type repeated in the data).

One generation becomes one ``message`` output item with one ``output_text`` part,
the shape vLLM and OpenAI answer for a plain text request.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from loadtest.sim.protocol import GenerationRequest, RequestError, _build, _load
from loadtest.sim.tokens import count_chat_tokens

RESPONSES = "responses"


def parse_responses(body: bytes) -> GenerationRequest:
    data = _load(body)
    given = data.get("input")
    texts: list[str] = []
    if isinstance(data.get("instructions"), str):
        texts.append(data["instructions"])
    user: list[str] = []
    if isinstance(given, str):
        user.append(given)
        texts.append(given)
    elif isinstance(given, list):
        for item in given:
            if not isinstance(item, dict):
                raise RequestError(400, "each input item must be an object", param="input")
            text = _item_text(item)
            texts.append(text)
            if item.get("role", "user") == "user":
                user.append(text)
    else:
        raise RequestError(400, "`input` must be a string or a list of items", param="input")
    # Echo says back the last user input, as for chat.
    return _build(
        RESPONSES,
        data,
        user[-1] if user else (texts[-1] if texts else ""),
        count_chat_tokens(texts),
        data.get("max_output_tokens"),
    )


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content", item.get("output"))
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def response_id() -> str:
    return "resp_" + secrets.token_hex(8)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_object(
    rid: str, created: int, model: str, *, status: str, text: str | None, message_id: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """The Response object; ``text`` None while the stream has produced no output yet."""
    output = [] if text is None else [_message(message_id, text, "completed")]
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "model": model,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "max_output_tokens": None,
        "previous_response_id": None,
        "reasoning": None,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def _message(message_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": [_part(text)]}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def whole_body(
    rid: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> bytes:
    body = response_object(
        rid,
        int(time.time()),
        model,
        status="completed",
        text=text,
        message_id="msg_" + secrets.token_hex(8),
        usage=_usage(prompt_tokens, completion_tokens),
    )
    if finish_reason == "length":
        body["status"] = "incomplete"
        body["incomplete_details"] = {"reason": "max_output_tokens"}
    return orjson.dumps(body)


class EventEncoder:
    """One stream's typed events, numbered by ``sequence_number`` as OpenAI numbers them."""

    def __init__(self, rid: str, model: str, prompt_tokens: int) -> None:
        self._rid = rid
        self._model = model
        self._created = int(time.time())
        self._prompt_tokens = prompt_tokens
        self._message_id = "msg_" + secrets.token_hex(8)
        self._sequence = 0
        self._text: list[str] = []

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        """``response.created``, ``response.in_progress``, the item and its empty part."""
        body = response_object(
            self._rid,
            self._created,
            self._model,
            status="in_progress",
            text=None,
            message_id=self._message_id,
            usage=None,
        )
        message = _message(self._message_id, "", "in_progress")
        message["content"] = []
        return (
            self._event("response.created", {"response": body})
            + self._event("response.in_progress", {"response": body})
            + self._event("response.output_item.added", {"output_index": 0, "item": message})
            + self._event(
                "response.content_part.added",
                {"item_id": self._message_id, "output_index": 0, "content_index": 0, "part": _part("")},
            )
        )

    def delta(self, text: str) -> bytes:
        self._text.append(text)
        return self._event(
            "response.output_text.delta",
            {"item_id": self._message_id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": []},
        )

    def finish(self, completion_tokens: int, finish_reason: str) -> bytes:
        """The ``*.done`` events repeating the whole text, then ``response.completed``."""
        text = "".join(self._text)
        body = response_object(
            self._rid,
            self._created,
            self._model,
            status="completed",
            text=text,
            message_id=self._message_id,
            usage=_usage(self._prompt_tokens, completion_tokens),
        )
        last = "response.completed"
        if finish_reason == "length":
            body["status"] = "incomplete"
            body["incomplete_details"] = {"reason": "max_output_tokens"}
            last = "response.incomplete"
        where = {"item_id": self._message_id, "output_index": 0, "content_index": 0}
        return (
            self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
            + self._event("response.content_part.done", {**where, "part": _part(text)})
            + self._event(
                "response.output_item.done", {"output_index": 0, "item": _message(self._message_id, text, "completed")}
            )
            + self._event(last, {"response": body})
        )
