"""``POST /v1/responses``: the Responses API (input items in, a Response object out),
and its stream dialect when output monitors apply.

A Responses stream is typed events (``event: response.output_text.delta`` with the type
repeated in the data), ending with ``response.completed`` (or ``incomplete``/``failed``),
no ``[DONE]``. Delta events (output text, refusals, reasoning text and summaries,
function-call arguments) are the streaming policy's items (``gateway.stream_policy``;
the item is the event, its text the ``delta``), one policy field per streamed text, so
hold-back and redaction work as for chat. Every other event first lets out all text
held before it, then passes in order; the events that repeat a whole text
(``*.done``, ``output_item.*``, ``content_part.*``, ``response.completed``) are
rewritten to the text the client was actually sent, so a redaction reads the same in
the deltas and in the final Response. A text that was never streamed (a function
call's name) is checked whole where it first appears. A block ends the stream with
``response.incomplete`` (``content_filter``) whose output is the refusal; a fault ends
it with an ``error`` event. Untouched events leave as the upstream's own bytes. The read
loop and the policy plumbing are ``gateway.monitored_relay``'s, shared with chat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.answer import ProtocolViolation, usage_counts
from gateway.endpoints.base import NO_USAGE, Endpoint, Passing
from gateway.endpoints.response_output import (
    FieldId,
    OutputText,
    block_response,
    index_of,
    item_texts,
    part_texts,
    response_texts,
    set_text,
)
from gateway.errors import BadRequest, GatewayError, error_event
from gateway.input_text import (
    InputView,
    Path,
    Uncheckable,
    as_list,
    dotted,
    json_type,
    message_fields,
    new_view,
    part_fields,
    strings,
    text_field,
)
from gateway.relay import RawStream, next_sequence
from gateway.sse import SSEEvent
from gateway.stream_policy import Guard, Item, Out, Stop
from monitors.redact import apply_redactions
from monitors.verdicts import StageResult


class ResponsesRequest(BaseModel):
    """The Responses API request: ``input`` is a string or a list of items (messages,
    function call outputs, ...), read by ``read_responses``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    stream: bool = False


def read_responses(body: dict[str, Any], *, check_tools: bool) -> InputView:
    """The Responses API: ``instructions``, then ``input`` (a string, or one text per
    item), then the tool definitions."""
    view = new_view(body)
    if body.get("instructions") is not None:
        view.add([(("instructions",), text_field(body["instructions"], ("instructions",)))])
    given = body["input"]
    if isinstance(given, str):
        view.add([(("input",), given)])
    else:
        for index, item in enumerate(given):
            view.add(list(_item_fields(item, ("input", index), view)))
    if check_tools:
        for index, tool in enumerate(as_list(body.get("tools"))):
            view.add(list(strings(tool, ("tools", index))))
    return view


def _item_fields(item: Any, where: Path, view: InputView) -> Iterator[tuple[Path, str]]:
    """One input item: a message (``type`` ``message`` or absent), a function call or its
    output, a reasoning item. Any other item (an ``item_reference`` to stored state, a
    built-in tool's call) is input no monitor here reads: listed as ``other``."""
    if not isinstance(item, dict):
        param = dotted(where)
        raise BadRequest(f"invalid request: {param}: must be an object", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if not isinstance(content, (str, list)):
            param = dotted((*where, "content"))
            raise BadRequest(
                f"invalid request: {param}: must be a string or a list of content parts, not {json_type(content)}",
                param=param,
            )
        yield from message_fields(item, where, view)
    elif kind == "function_call":
        for key in ("name", "arguments"):
            if item.get(key) is not None:
                yield (*where, key), text_field(item[key], (*where, key))
    elif kind == "function_call_output":
        yield from _call_output_fields(item, where, view)
    elif kind == "reasoning":
        yield from _reasoning_fields(item, where)
    else:
        view.uncheckable.append(Uncheckable("other", dotted(where)))


def _call_output_fields(item: dict[str, Any], where: Path, view: InputView) -> Iterator[tuple[Path, str]]:
    output = item.get("output")
    if isinstance(output, list):
        for index, part in enumerate(output):
            yield from part_fields(part, (*where, "output", index), view)
    else:
        yield (*where, "output"), text_field(output, (*where, "output"))


def _reasoning_fields(item: dict[str, Any], where: Path) -> Iterator[tuple[Path, str]]:
    for key in ("summary", "content"):
        for index, part in enumerate(as_list(item.get(key))):
            if isinstance(part, dict) and part.get("text") is not None:
                path = (*where, key, index, "text")
                yield path, text_field(part["text"], path)


# Delta event type -> (field family, field kind, the event key of its sub-index).
DELTAS = {
    "response.output_text.delta": ("content", "content", "content_index"),
    "response.refusal.delta": ("content", "refusal", "content_index"),
    "response.reasoning_text.delta": ("reasoning_content", "reasoning", "content_index"),
    "response.reasoning_summary_text.delta": ("summary", "reasoning", "summary_index"),
    "response.function_call_arguments.delta": ("arguments", "tool_calls", None),
}
# ``*.done`` event type -> (family, kind, the key of its whole text, sub-index key).
DONE_TEXTS = {
    "response.output_text.done": ("content", "content", "text", "content_index"),
    "response.refusal.done": ("content", "refusal", "refusal", "content_index"),
    "response.reasoning_text.done": ("reasoning_content", "reasoning", "text", "content_index"),
    "response.reasoning_summary_text.done": ("summary", "reasoning", "text", "summary_index"),
    "response.function_call_arguments.done": ("arguments", "tool_calls", "arguments", None),
}
PARTS = {
    "response.content_part.added": "content_index",
    "response.content_part.done": "content_index",
    "response.reasoning_summary_part.added": "summary_index",
    "response.reasoning_summary_part.done": "summary_index",
}
ITEMS = ("response.output_item.added", "response.output_item.done")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def encode(data: dict[str, Any]) -> bytes:
    return b"event: " + str(data.get("type", "message")).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def event_texts(data: dict[str, Any]) -> list[OutputText]:
    """The whole texts an event that is not a delta carries (paths inside ``data``)."""
    kind = data["type"]
    if isinstance(data.get("response"), dict):
        return response_texts(data["response"], ("response",))
    if kind in ITEMS:
        return list(item_texts(data.get("item"), index_of(data.get("output_index"), "output_index"), ("item",)))
    if kind in PARTS:
        return list(
            part_texts(
                data.get("part"),
                index_of(data.get("output_index"), "output_index"),
                index_of(data.get(PARTS[kind]), PARTS[kind]),
                ("part",),
            )
        )
    if kind in DONE_TEXTS:
        family, field_kind, key, sub = DONE_TEXTS[kind]
        text = data.get(key)
        if not isinstance(text, str):
            raise ProtocolViolation(f"{kind}.{key} is not a string")
        field = (index_of(data.get("output_index"), "output_index"), family, index_of(data.get(sub), sub) if sub else 0)
        return [OutputText(field, field_kind, (key,), text)] if text else []
    return []


def _raw_error(last: bytes) -> Callable[[GatewayError], bytes]:
    return partial(error_event, sequence_number=next_sequence(last))


# The raw relay: no [DONE]; one of these events ends a Responses stream.
RAW_STREAM = RawStream(tuple(b"event: " + end.encode() for end in TERMINAL), _raw_error)


class ResponsesStream:
    """The stream dialect of the Responses API (see the module's docstring)."""

    end = "response.completed"
    event_noun = "a Responses event"

    def __init__(self, verdicts: Callable[[], dict[str, list[str]]], refusal: str, clock: Callable[[], float]) -> None:
        self._verdicts = verdicts
        self._refusal = refusal
        self._clock = clock
        self._field_ids: dict[FieldId, int] = {}  # a streamed text -> its policy index
        self._fields: list[FieldId] = []  # the policy index -> the streamed text
        self._sent: dict[FieldId, str] = {}  # what the client was sent of each streamed text
        self._settled: dict[FieldId, tuple[str, str]] = {}  # whole text -> what it became
        self._response: dict[str, Any] = {}  # the latest Response object seen, for a block
        self._sequence = 0  # one past the last event's sequence_number

    def decode(self, event: SSEEvent) -> list[Item] | Passing:
        data = orjson.loads(event.data)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ProtocolViolation("an event without a type")
        sequence = data.get("sequence_number")
        if isinstance(sequence, int):
            self._sequence = sequence + 1
        item = self._item(data, event.raw)
        if item is not None:
            return [item]
        texts = event_texts(data)
        if data["type"] in TERMINAL:
            if not isinstance(data.get("response"), dict):
                raise ProtocolViolation(f"{data['type']} without its response object")
            return Passing(event.raw, (data, texts), usage=data["response"].get("usage"), last=True)
        # The upstream's own error event ends a failed stream: passed on, as chat passes
        # vLLM's error chunk; nothing may follow it.
        return Passing(event.raw, (data, texts), usage=NO_USAGE, last=data["type"] == "error")

    def _item(self, data: dict[str, Any], raw: bytes) -> Item | None:
        spec = DELTAS.get(data["type"])
        if spec is None:
            return None
        family, kind, sub = spec
        delta = data.get("delta")
        if not isinstance(delta, str):
            raise ProtocolViolation(f"{data['type']}.delta is not a string")
        field = (index_of(data.get("output_index"), "output_index"), family, index_of(data.get(sub), sub) if sub else 0)
        index = self._field_ids.get(field)
        if index is None:
            index = self._field_ids[field] = len(self._fields)
            self._fields.append(field)
            self._sent[field] = ""
        return Item(index, data, raw, [(kind, delta)] if delta else [], False, self._clock())

    async def settle(self, passing: Passing, guard: Guard) -> list[bytes] | Stop:
        """An event repeating whole texts: each as the client was sent it; a text never
        streamed is checked here."""
        data, texts = passing.data
        if isinstance(data.get("response"), dict):
            self._response = data["response"]
        changed, fresh = self._as_sent(data, texts)
        if fresh:
            result = await guard.check([t.text for t in fresh], [t.kind for t in fresh], None)
            if result is None or result.blocked_by is not None:
                return Stop(0, reason="blocked" if result else "overloaded")
            changed |= self._settle_fresh(data, fresh, result)
        if data["type"] in TERMINAL and (verdicts := self._verdicts()):
            data.update(verdicts)
            changed = True
        return [encode(data) if changed else passing.raw]

    def _as_sent(self, data: dict[str, Any], texts: list[OutputText]) -> tuple[bool, list[OutputText]]:
        """Rewrite each whole text the client was sent (or that was settled before) as it
        was sent; the texts never seen before."""
        changed = False
        fresh: list[OutputText] = []
        for text in texts:
            if text.field in self._sent:
                final = self._sent[text.field]
            elif text.field in self._settled and self._settled[text.field][0] == text.text:
                final = self._settled[text.field][1]
            else:
                fresh.append(text)
                continue
            if final != text.text:
                set_text(data, text.path, final)
                changed = True
        return changed, fresh

    def _settle_fresh(self, data: dict[str, Any], fresh: list[OutputText], result: StageResult) -> bool:
        changed = False
        for text, spans in zip(fresh, result.redactions, strict=True):
            final = apply_redactions(text.text, spans) if spans else text.text
            self._settled[text.field] = (text.text, final)
            if spans:
                set_text(data, text.path, final)
                changed = True
        return changed

    def encode(self, out: Out) -> bytes:
        item = out.item
        if out.part is None:
            self._sent[self._fields[item.index]] += item.chunk["delta"]
            return item.raw or encode(item.chunk)
        event = orjson.loads(orjson.dumps(item.chunk))
        for text in out.part.texts.values():
            event["delta"] = text
        self._sent[self._fields[item.index]] += event["delta"]
        if event.get("logprobs"):
            event["logprobs"] = []  # they would spell out the text a mask replaced
        return encode(event)

    def block(self, stop: Stop) -> list[bytes]:
        """End with ``response.incomplete`` carrying the refusal."""
        response = orjson.loads(orjson.dumps(self._response)) if self._response else {}
        block_response(response, self._refusal)
        response.update(self._verdicts())
        return [encode({"type": "response.incomplete", "sequence_number": self._sequence, "response": response})]

    def error(self, error: GatewayError) -> bytes:
        return error_event(error, sequence_number=self._sequence)


class ResponsesAnswer:
    """A whole Response object: every output text checked, redacted in place; a block
    replaces the output with the refusal (status ``incomplete``, ``content_filter``)."""

    def __init__(self, body: bytes, *, texts: bool) -> None:
        self._payload = orjson.loads(body)
        if not isinstance(self._payload, dict):
            raise ProtocolViolation("the answer is not a JSON object")
        self._texts = response_texts(self._payload) if texts else []
        self.usage = usage_counts(self._payload.get("usage"))
        self.texts = [t.text for t in self._texts]
        self.kinds = [t.kind for t in self._texts]

    def apply(self, result: StageResult, refusal: str) -> bytes | None:
        if result.blocked_by is not None:
            block_response(self._payload, refusal)
            return orjson.dumps(self._payload)
        if not result.redacted:
            return None
        for text, spans in zip(self._texts, result.redactions, strict=True):
            if spans:
                set_text(self._payload, text.path, apply_redactions(text.text, spans))
        return orjson.dumps(self._payload)


class ResponsesOutput:
    noun = "a Response"

    def answer(self, body: bytes, *, texts: bool) -> ResponsesAnswer:
        return ResponsesAnswer(body, texts=texts)

    def stream(
        self, verdicts: Callable[[], dict[str, list[str]]], refusal: str, clock: Callable[[], float]
    ) -> ResponsesStream:
        return ResponsesStream(verdicts, refusal, clock)


RESPONSES = Endpoint(
    name="responses",
    path="/v1/responses",
    request_model=ResponsesRequest,
    input_param="input",
    read_input=read_responses,
    output=ResponsesOutput(),
    raw=RAW_STREAM,
)
