"""The upstream's answer: its shape checked, and every text of a choice a client can read.

Upstream answers are untrusted input: a wrong shape is a protocol violation (the
gateway answers 502 or ends the stream with an error event), never an exception
deep in the proxy. Output monitors must see *every* field the client receives, not
only ``content``: a model that reasons or calls tools, or a client that asks for
``logprobs``, would otherwise walk around them. One definition of "the texts of a
choice" (``choice_fields``) serves the non-streamed answer and the stream.

A field is named by a path-like key: ``content``, ``refusal``, ``reasoning_content``,
``reasoning``, ``tool_calls.<i>.name``, ``tool_calls.<i>.arguments``, ``text``
(completions), and ``logprobs`` (the chosen tokens joined). Its *kind* (the part
before the first dot, with both reasoning keys under ``reasoning``) is what a
monitor's ``fields`` option selects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from monitors.base import Span
from monitors.redact import marker

# What a monitor's ``fields`` option may name.
FIELD_KINDS = ("content", "refusal", "reasoning", "tool_calls", "logprobs")
_TEXT_KEYS = ("content", "refusal", "reasoning_content", "reasoning")


class ProtocolViolation(ValueError):
    """The upstream answered something that is not the OpenAI protocol."""


def field_kind(key: str) -> str:
    head = key.split(".", 1)[0]
    if head in ("reasoning_content", "reasoning"):
        return "reasoning"
    return "content" if head == "text" else head


def _str_or_none(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not a string")


def _dict_or_none(value: Any, where: str) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not an object")


def usage_counts(usage: Any) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of a ``usage`` object; None when absent."""
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise ProtocolViolation(f"usage is {type(usage).__name__}, not an object")
    counts = []
    # The Responses API names them input_tokens and output_tokens.
    for key, alias in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        value = usage.get(key, usage.get(alias, 0))
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolViolation(f"usage.{key} is {value!r}, not a token count")
        counts.append(value)
    return counts[0], counts[1]


def choices_of(payload: Any, *, streamed: bool) -> list[dict]:
    """The ``choices`` of a completion (or stream chunk), each checked to be an object.

    A stream chunk may have no choices (a usage or error event): ``[]``.
    """
    if not isinstance(payload, dict):
        raise ProtocolViolation("the answer is not a JSON object")
    choices = payload.get("choices")
    if choices is None and streamed:
        return []
    if not isinstance(choices, list):
        raise ProtocolViolation(f"choices is {type(choices).__name__}, not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise ProtocolViolation("a choice is not an object")
        index = choice.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            raise ProtocolViolation("choice.index is not an integer")
    return choices


@dataclass(slots=True)
class Field:
    """One readable text of a choice, with where it lives (so it can be rewritten)."""

    key: str
    text: str

    @property
    def kind(self) -> str:
        return field_kind(self.key)


def holder_of(route: str, choice: dict, *, streamed: bool) -> dict | None:
    """The object carrying a chat choice's texts (``message`` or ``delta``); the choice
    itself on the completions route."""
    if route == "completions":
        return choice
    name = "delta" if streamed else "message"
    return _dict_or_none(choice.get(name), f"choice.{name}")


def choice_fields(route: str, choice: dict, *, streamed: bool) -> list[Field]:
    """Every text of a choice a client can read, in a fixed order. Empty texts are skipped.

    Raises ProtocolViolation when a field has the wrong type.
    """
    fields: list[Field] = []
    holder = holder_of(route, choice, streamed=streamed)
    if route == "completions":
        text = _str_or_none(choice.get("text"), "choice.text")
        if text:
            fields.append(Field("text", text))
    elif holder is not None:
        for key in _TEXT_KEYS:
            text = _str_or_none(holder.get(key), f"message.{key}")
            if text:
                fields.append(Field(key, text))
        for position, _call, function in _tool_calls(holder):
            for part in ("name", "arguments"):
                text = _str_or_none(function.get(part), f"tool_calls.{part}")
                if text:
                    fields.append(Field(f"tool_calls.{position}.{part}", text))
    tokens = logprob_tokens(route, choice)
    if tokens:
        fields.append(Field("logprobs", "".join(tokens)))
    return fields


def _tool_calls(holder: dict) -> Iterator[tuple[int, dict, dict]]:
    """``(position, call, function)`` per tool call. Streamed fragments name their call by
    ``index``; whole answers by their place in the list."""
    calls = holder.get("tool_calls")
    if calls is None:
        return
    if not isinstance(calls, list):
        raise ProtocolViolation("tool_calls is not a list")
    for place, call in enumerate(calls):
        if not isinstance(call, dict):
            raise ProtocolViolation("a tool call is not an object")
        function = _dict_or_none(call.get("function"), "tool_call.function") or {}
        position = call.get("index", place)
        if isinstance(position, bool) or not isinstance(position, int):
            raise ProtocolViolation("tool_call.index is not an integer")
        yield position, call, function


def set_field(route: str, choice: dict, key: str, text: str, *, streamed: bool) -> None:
    """Write ``text`` into the field ``key`` of ``choice`` (the inverse of choice_fields)."""
    if key == "logprobs":
        raise ValueError("logprobs are rewritten with redact_logprobs")
    if route == "responses":  # a Responses stream's delta event (gateway.endpoints.responses)
        choice["delta"] = text
        return
    if route == "completions":
        choice["text"] = text
        return
    holder = choice.setdefault("delta" if streamed else "message", {})
    if key.startswith("tool_calls."):
        _, position, part = key.split(".")
        for found, _call, function in _tool_calls(holder):
            if found == int(position):
                function[part] = text
        return
    holder[key] = text


# -- logprobs -------------------------------------------------------------------------
def _logprob_entries(route: str, choice: dict) -> list | None:
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise ProtocolViolation("choice.logprobs is not an object")
    entries = logprobs.get("tokens" if route == "completions" else "content")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ProtocolViolation("logprobs tokens are not a list")
    return entries


def logprob_tokens(route: str, choice: dict) -> list[str]:
    """The chosen tokens of a choice's logprobs, in order (empty when none were asked)."""
    entries = _logprob_entries(route, choice)
    if not entries:
        return []
    if route == "completions":
        return [_str_or_none(token, "logprobs.tokens") or "" for token in entries]
    tokens = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtocolViolation("a logprobs entry is not an object")
        tokens.append(_str_or_none(entry.get("token"), "logprobs.token") or "")
    return tokens


def redact_logprobs(route: str, choice: dict, spans: list[Span]) -> None:
    """Mask the tokens a span covers (``spans`` index the joined tokens; in a stream a
    span may begin before this chunk's first token, at a negative offset): the token
    where a span begins becomes its marker, the others empty; their alternatives go."""
    entries = _logprob_entries(route, choice)
    if not entries or not spans:
        return
    tokens = logprob_tokens(route, choice)
    position = 0
    for at, token in enumerate(tokens):
        start, end = position, position + len(token)
        position = end
        hit = next((s for s in spans if s.start < end and start < s.end
                    or s.start == start and not token), None)
        if hit is None:
            continue
        _mask_entry(route, choice, at, marker(hit.label) if start <= hit.start < end else "")


def _mask_entry(route: str, choice: dict, at: int, text: str) -> None:
    logprobs = choice["logprobs"]
    if route == "completions":
        logprobs["tokens"][at] = text
        tops = logprobs.get("top_logprobs")
        if isinstance(tops, list) and at < len(tops):
            tops[at] = {text: 0.0} if text else {}
        return
    entry = logprobs["content"][at]
    entry["token"] = text
    entry["bytes"] = list(text.encode()) if text else []
    if "top_logprobs" in entry:
        entry["top_logprobs"] = []


def clear_choice(route: str, choice: dict, refusal: str, *, streamed: bool) -> None:
    """Replace everything a blocked choice carries with the refusal message."""
    if route == "completions":
        choice["text"] = refusal
    else:
        name = "delta" if streamed else "message"
        holder = choice.get(name) if isinstance(choice.get(name), dict) else {}
        role = holder.get("role", "assistant")
        choice[name] = {"role": role, "content": refusal} if not streamed or refusal \
            else {}
    if choice.get("logprobs") is not None:
        choice["logprobs"] = None
    choice["finish_reason"] = "content_filter"

