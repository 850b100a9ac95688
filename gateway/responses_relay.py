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
it with an ``error`` event. Untouched events leave as the upstream's own bytes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.answer import ProtocolViolation
from gateway.errors import GatewayError, UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.recorder import StreamRecorder
from gateway.relay import end_of_stream_error, midstream_error
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
from gateway.sse import SSEEvent, SSEParser
from gateway.stream_policy import HoldBack, Item, Out, Step, Stop, StreamFirst
from gateway.upstream import UpstreamCall
from monitors.pipeline import MonitorOverloaded, MonitorPipeline, StageResult
from monitors.redact import apply_redactions

log = logging.getLogger("taxgate.relay")

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


class ResponsesRelay:
    def __init__(self, call: UpstreamCall, rec: StreamRecorder, *, pipeline: MonitorPipeline,
                 streaming: StreamingSpec, metrics: GatewayMetrics, idle_s: float,
                 refusal: str) -> None:
        self._call = call
        self._rec = rec
        self._ctx = rec.ctx
        self._pipeline = pipeline
        self._metrics = metrics
        self._idle_s = idle_s
        self._refusal = refusal
        self._mode = streaming.mode if pipeline.enforces("output") else "stream_first"
        if self._mode == "holdback":
            self._policy: HoldBack | StreamFirst = HoldBack(
                ROUTE, self._check, self._hold, overlap=streaming.overlap_chars,
                max_hold_chars=streaming.max_hold_chars, at_max_hold=streaming.at_max_hold,
                clock=rec.clock, on_release=self._released)
        else:
            self._policy = StreamFirst(ROUTE, self._check, self._hold,
                                       overlap=streaming.overlap_chars)
        self._context = {"route": ROUTE, "model": self._ctx.model}
        self._field_ids: dict[FieldId, int] = {}  # a streamed text -> its policy index
        self._fields: list[FieldId] = []  # the policy index -> the streamed text
        self._sent: dict[FieldId, str] = {}  # what the client was sent of each streamed text
        self._settled: dict[FieldId, tuple[str, str]] = {}  # whole text -> what it became
        self._response: dict[str, Any] = {}  # the latest Response object seen, for a block
        self._sequence = 0
        self._finished = False
        self._cut = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = SSEParser()
        try:
            async for raw in self._call.response.aiter_raw():
                self._rec.read()
                if self._finished:
                    continue
                out = await self._on_read(parser.feed(raw))
                if out:
                    yield self._write(out)
                if self._cut:
                    return
            self._rec.upstream_done()
            if not self._finished:
                out = await self._on_read(parser.flush())
                if not self._finished:
                    out += self._fail(UpstreamError(
                        f"upstream {self._call.replica.url} ended the stream without "
                        "response.completed"), "protocol")
                yield self._write(out)
        except httpx.HTTPError as exc:
            yield self._write(self._fail(midstream_error(exc, self._call.replica.url,
                                                         self._idle_s), "midstream"))
        finally:
            stats = self._policy.stats
            self._metrics.stream_checks.observe(stats.checks)
            if stats.hold_cap_released:
                self._metrics.stream_hold_cap.labels("release").inc(stats.hold_cap_released)
            self._rec.close()
            await self._policy.close()
            await self._call.aclose()

    async def _on_read(self, events: list[SSEEvent]) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
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
            out += await self._run(self._policy.feed(items))
            items = []
            out += await self._run(self._policy.drain())
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
                     ) -> list[tuple[bytes, bool]]:
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
        if data["type"] in TERMINAL and self._ctx.flags:
            data["taxgate_flags"] = list(self._ctx.flags)
            changed = True
        return [(encode(data) if changed else raw, False)]

    # -- policy ---------------------------------------------------------------------
    async def _run(self, step_awaitable) -> list[tuple[bytes, bool]]:
        if self._finished:
            step_awaitable.close()
            return []
        step: Step = await step_awaitable
        out = [self._encode(o) for o in step.out]
        if step.stop is not None:
            out += await self._block(step.stop)
        return out

    async def _check(self, texts: list[str], kinds: list[str],
                     whole: list[str] | None) -> StageResult | None:
        started = self._rec.clock()
        try:
            result = await self._pipeline.check("output", texts, request_id=self._ctx.request_id,
                                                kinds=kinds, whole=whole, context=self._context)
        except MonitorOverloaded as exc:
            log.warning("request %s: monitor %s overloaded, stream cut", self._ctx.request_id,
                        exc.monitor_id)
            return None
        finally:
            self._ctx.add_phase("output_monitors", self._rec.clock() - started)
        for decision in result.annotations:
            if decision.monitor_id not in self._ctx.flags:
                self._ctx.flags.append(decision.monitor_id)
        return result

    def _hold(self, text: str, start: int, kind: str) -> int:
        return self._pipeline.hold("output", text, start, kind)

    def _released(self, delay: float, chars: int) -> None:
        self._metrics.stream_holdback.observe(delay)
        self._metrics.stream_held_chars.observe(chars)
        if self._ctx.first_sent is None:
            self._ctx.add_phase("holdback", delay)  # as MonitoredRelay counts it

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

    def _write(self, out: list[tuple[bytes, bool]]) -> bytes:
        self._rec.sent(sum(1 for _, text in out if text))
        return b"".join(data for data, _ in out)

    async def _block(self, stop: Stop) -> list[tuple[bytes, bool]]:
        """End with ``response.incomplete`` carrying the refusal; cancel the upstream."""
        self._metrics.stream_blocks.labels(self._mode).inc()
        if stop.leaked:
            self._metrics.stream_leaked_tokens.inc(stop.leaked)
        if stop.reason == "hold_cap":
            self._metrics.stream_hold_cap.labels("block").inc()
        response = orjson.loads(orjson.dumps(self._response)) if self._response else {}
        block_response(response, self._refusal)
        if self._ctx.flags:
            response["taxgate_flags"] = list(self._ctx.flags)
        event = {"type": "response.incomplete", "sequence_number": self._sequence,
                 "response": response}
        self._finished = self._cut = True
        await self._call.aclose()
        return [(encode(event), False)]

    def _fail(self, error: GatewayError, kind: str) -> list[tuple[bytes, bool]]:
        self._finished = self._cut = True
        return [(end_of_stream_error(self._rec, error, kind, self._sequence), False)]
