"""The Responses API's output: every text of a Response object (or of one of its stream
events) a client can read, where it lives, and the blocked answer.

A Response carries an ``output`` list of items: ``message`` items with ``output_text``
and ``refusal`` content parts, ``reasoning`` items with ``summary`` and ``content``
texts, ``function_call`` items with a ``name`` and ``arguments``. Each text is named by
a *field id* ``(output_index, family, sub_index)``, the same id its stream deltas carry
(``gateway.endpoints.responses``), so a text streamed as deltas and repeated whole in the
``*.done`` events and ``response.completed`` is known as one field. Its *kind* is what
a monitor's ``fields`` option selects (``content``, ``refusal``, ``reasoning``,
``tool_calls``). Item types that carry no model text (a built-in tool's call, say) are
passed as they are. A wrong shape is a ProtocolViolation (502), never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.answer import ProtocolViolation

FieldId = tuple[int, str, int]
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class OutputText:
    field: FieldId
    kind: str
    path: Path  # inside the object walked
    text: str


def _obj(value: Any, where: str) -> dict:
    if isinstance(value, dict):
        return value
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not an object")


def _parts(value: Any, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not a list")


def _string(value: Any, where: str) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    raise ProtocolViolation(f"{where} is {type(value).__name__}, not a string")


def index_of(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolViolation(f"{where} is not an integer")
    return value


def part_family(part_type: Any) -> tuple[str, str, str] | None:
    """A content part's (family, kind, text key); None for a part without model text."""
    if part_type == "output_text":
        return "content", "content", "text"
    if part_type == "refusal":
        return "content", "refusal", "refusal"
    if part_type == "reasoning_text":
        return "reasoning_content", "reasoning", "text"
    if part_type == "summary_text":
        return "summary", "reasoning", "text"
    return None


def item_texts(item: Any, output_index: int, where: Path = ()) -> Iterator[OutputText]:
    """The texts of one output item (empty texts skipped)."""
    item = _obj(item, "an output item")
    kind = item.get("type")
    if kind == "message":
        for at, part in enumerate(_parts(item.get("content"), "message.content")):
            yield from part_texts(part, output_index, at, (*where, "content", at))
    elif kind == "reasoning":
        for key, family in (("summary", "summary"), ("content", "reasoning_content")):
            for at, part in enumerate(_parts(item.get(key), f"reasoning.{key}")):
                text = _string(_obj(part, f"reasoning.{key} part").get("text"), f"reasoning.{key}.text")
                if text:
                    yield OutputText((output_index, family, at), "reasoning", (*where, key, at, "text"), text)
    elif kind == "function_call":
        for key in ("name", "arguments"):
            text = _string(item.get(key), f"function_call.{key}")
            if text:
                yield OutputText((output_index, key, 0), "tool_calls", (*where, key), text)


def part_texts(part: Any, output_index: int, at: int, where: Path) -> Iterator[OutputText]:
    part = _obj(part, "a content part")
    family = part_family(part.get("type"))
    if family is None:
        return
    name, kind, key = family
    text = _string(part.get(key), f"{part.get('type')}.{key}")
    if text:
        yield OutputText((output_index, name, at), kind, (*where, key), text)


def response_texts(response: Any, where: Path = ()) -> list[OutputText]:
    """Every text of a Response object's ``output``."""
    response = _obj(response, "the response")
    output = response.get("output")
    if not isinstance(output, list):
        raise ProtocolViolation(f"output is {type(output).__name__}, not a list")
    return [text for at, item in enumerate(output) for text in item_texts(item, at, (*where, "output", at))]


def set_text(node: Any, path: Path, text: str) -> None:
    """Write a checked text back; the logprobs beside it would spell out what it replaced,
    so they go."""
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = text
    if node.get("logprobs"):
        node["logprobs"] = []


def refusal_item(refusal: str) -> dict[str, Any]:
    return {
        "id": "msg_blocked",
        "type": "message",
        "status": "incomplete",
        "role": "assistant",
        "content": [{"type": "output_text", "text": refusal, "annotations": []}],
    }


def block_response(response: dict[str, Any], refusal: str) -> None:
    """Replace a blocked Response's whole output with one message carrying the refusal."""
    response["output"] = [refusal_item(refusal)]
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": "content_filter"}
    if "output_text" in response:  # a convenience some servers add
        response["output_text"] = refusal
