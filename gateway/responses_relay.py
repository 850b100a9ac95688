"""The stream relay of the Responses API when output monitors apply.

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
loop and the policy plumbing are ``gateway.policy_relay``'s, shared with chat.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson

from gateway.answer import ProtocolViolation
from gateway.errors import GatewayError, UpstreamError, error_event
from gateway.metrics import GatewayMetrics
from gateway.policy_relay import PolicyRelay, Written
from gateway.recorder import StreamRecorder
from gateway.relay import end_of_stream_error
from gateway.response_output import (
    FieldId,
    OutputText,
    block_response,
    index_of,
    item_texts,
    part_texts,
    response_texts,
    set_text,
)
from gateway.settings import StreamingSpec
from gateway.sse import SSEEvent
from gateway.stream_policy import Item, Out, Stop
from gateway.upstream import UpstreamCall
from monitors.pipeline import MonitorPipeline
from monitors.redact import apply_redactions

ROUTE = "responses"
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
PARTS = {"response.content_part.added": "content_index",
         "response.content_part.done": "content_index",
         "response.reasoning_summary_part.added": "summary_index",
         "response.reasoning_summary_part.done": "summary_index"}
ITEMS = ("response.output_item.added", "response.output_item.done")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def encode(data: dict[str, Any]) -> bytes:
    return (b"event: " + str(data.get("type", "message")).encode() + b"\ndata: "
            + orjson.dumps(data) + b"\n\n")


def event_texts(data: dict[str, Any]) -> list[OutputText]:
    """The whole texts an event that is not a delta carries (paths inside ``data``)."""
    kind = data["type"]
    if isinstance(data.get("response"), dict):
        return response_texts(data["response"], ("response",))
    if kind in ITEMS:
        return list(item_texts(data.get("item"), index_of(data.get("output_index"),
                                                          "output_index"), ("item",)))
    if kind in PARTS:
        return list(part_texts(data.get("part"), index_of(data.get("output_index"),
                                                          "output_index"),
                               index_of(data.get(PARTS[kind]), PARTS[kind]), ("part",)))
    if kind in DONE_TEXTS:
        family, field_kind, key, sub = DONE_TEXTS[kind]
        text = data.get(key)
        if not isinstance(text, str):
            raise ProtocolViolation(f"{kind}.{key} is not a string")
        field = (index_of(data.get("output_index"), "output_index"), family,
                 index_of(data.get(sub), sub) if sub else 0)
        return [OutputText(field, field_kind, (key,), text)] if text else []
    return []


class ResponsesRelay(PolicyRelay):
    END = "response.completed"

    def __init__(self, call: UpstreamCall, rec: StreamRecorder, *, pipeline: MonitorPipeline,
                 streaming: StreamingSpec, metrics: GatewayMetrics, idle_s: float,
                 refusal: str) -> None:
        super().__init__(call, rec, route=ROUTE, pipeline=pipeline, streaming=streaming,
                         metrics=metrics, idle_s=idle_s)
        self._refusal = refusal
        self._field_ids: dict[FieldId, int] = {}  # a streamed text -> its policy index
        self._fields: list[FieldId] = []  # the policy index -> the streamed text
        self._sent: dict[FieldId, str] = {}  # what the client was sent of each streamed text
        self._settled: dict[FieldId, tuple[str, str]] = {}  # whole text -> what it became
        self._response: dict[str, Any] = {}  # the latest Response object seen, for a block
        self._sequence = 0  # one past the last event's sequence_number

    async def _on_read(self, events: list[SSEEvent]) -> Written:
        out: Written = []
        items: list[Item] = []
        for event in events:
            try:
                data = orjson.loads(event.data)
                if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                    raise ProtocolViolation("an event without a type")
                sequence = data.get("sequence_number")
                if isinstance(sequence, int):
                    self._sequence = sequence + 1
                item = self._item(data, event.raw)
                if item is None:
                    texts = event_texts(data)
            except (orjson.JSONDecodeError, ProtocolViolation) as exc:
                out += self._fail(UpstreamError(f"upstream {self._call.replica.url} sent an "
                                                f"event that is not a Responses event ({exc})"),
                                  "protocol")
                return out
            if item is not None:
                items.append(item)
                continue
            # Everything held before this event leaves first.
            out += await self._let_out(items)
            items = []
            if self._finished:
                return out
            out += await self._whole(data, event.raw, texts)
            if self._finished:
                return out
            if data["type"] in TERMINAL:
                self._rec.usage(data["response"].get("usage"))
                self._finished = True
                return out
            if data["type"] == "error":
                # The upstream ended a failed stream itself: passed on, as chat passes
                # vLLM's error chunk; nothing may follow it.
                self._finished = True
                return out
        out += await self._run(self._policy.feed(items))
        return out

    def _item(self, data: dict[str, Any], raw: bytes) -> Item | None:
        spec = DELTAS.get(data["type"])
        if spec is None:
            return None
        family, kind, sub = spec
        delta = data.get("delta")
        if not isinstance(delta, str):
            raise ProtocolViolation(f"{data['type']}.delta is not a string")
        field = (index_of(data.get("output_index"), "output_index"), family,
                 index_of(data.get(sub), sub) if sub else 0)
        index = self._field_ids.get(field)
        if index is None:
            index = self._field_ids[field] = len(self._fields)
            self._fields.append(field)
            self._sent[field] = ""
        return Item(index, data, raw, [(kind, delta)] if delta else [], False,
                    self._rec.clock())

    async def _whole(self, data: dict[str, Any], raw: bytes, texts: list[OutputText]
                     ) -> Written:
        """An event repeating whole texts: each as the client was sent it; a text never
        streamed is checked here."""
        if isinstance(data.get("response"), dict):
            self._response = data["response"]
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
        if fresh:
            result = await self._check([t.text for t in fresh], [t.kind for t in fresh], None)
            if result is None or result.blocked_by is not None:
                return await self._block(Stop(0, reason="blocked" if result else "overloaded"))
            for text, spans in zip(fresh, result.redactions, strict=True):
                final = apply_redactions(text.text, spans) if spans else text.text
                self._settled[text.field] = (text.text, final)
                if spans:
                    set_text(data, text.path, final)
                    changed = True
        if data["type"] in TERMINAL and self._ctx.verdict_fields():
            data.update(self._ctx.verdict_fields())
            changed = True
        return [(encode(data) if changed else raw, False)]

    # -- encode ---------------------------------------------------------------------
    def _encode(self, out: Out) -> tuple[bytes, bool]:
        item = out.item
        event = out.chunk if out.chunk is not None else item.chunk
        self._sent[self._fields[item.index]] += event["delta"]
        if out.chunk is None:
            return item.raw or encode(event), item.has_text
        if event.get("logprobs"):
            event["logprobs"] = []  # they would spell out the text a mask replaced
        return encode(event), item.has_text

    def _block_events(self, stop: Stop) -> Written:
        """End with ``response.incomplete`` carrying the refusal."""
        response = orjson.loads(orjson.dumps(self._response)) if self._response else {}
        block_response(response, self._refusal)
        response.update(self._ctx.verdict_fields())
        event = {"type": "response.incomplete", "sequence_number": self._sequence,
                 "response": response}
        return [(encode(event), False)]

    def _error_event(self, error: GatewayError, kind: str) -> bytes:
        return end_of_stream_error(self._rec, error, kind,
                                   partial(error_event, sequence_number=self._sequence))
