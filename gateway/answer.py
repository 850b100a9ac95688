"""The upstream's answer: the shape checks every endpoint shares.

Upstream answers are untrusted input: a wrong shape is a protocol violation (the
gateway answers 502 or ends the stream with an error event), never an exception
deep in the proxy. Output monitors must see *every* field the client receives, not
only ``content``: a model that reasons or calls tools, or a client that asks for
``logprobs``, would otherwise walk around them. Each endpoint says where its texts
are (``gateway.endpoints``: ``ChoiceFormat.fields`` for chat and completions, one
definition for the non-streamed answer and the stream).

A field is named by a path-like key: ``content``, ``refusal``, ``reasoning_content``,
``reasoning``, ``tool_calls.<i>.name``, ``tool_calls.<i>.arguments``, ``text``
(completions), and ``logprobs`` (the chosen tokens joined). Its *kind* (the part
before the first dot, with both reasoning keys under ``reasoning``) is what a
monitor's ``fields`` option selects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# What a monitor's ``fields`` option may name.
FIELD_KINDS = ("content", "refusal", "reasoning", "tool_calls", "logprobs")


class ProtocolViolation(ValueError):
    """The upstream answered something that is not the OpenAI protocol."""


def field_kind(key: str) -> str:
    head = key.split(".", 1)[0]
    if head in ("reasoning_content", "reasoning"):
        return "reasoning"
    return "content" if head == "text" else head


def str_or_none(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not a string")


def dict_or_none(value: Any, where: str) -> dict | None:
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


# One readable text of a choice: (key, text), the key saying where it lives (so it can be
# rewritten; its kind is field_kind(key)). A plain pair: a stream makes one per token.
Field = tuple[str, str]


def tool_calls(holder: dict) -> Iterator[tuple[int, dict, dict]]:
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
        function = dict_or_none(call.get("function"), "tool_call.function") or {}
        position = call.get("index", place)
        if isinstance(position, bool) or not isinstance(position, int):
            raise ProtocolViolation("tool_call.index is not an integer")
        yield position, call, function
