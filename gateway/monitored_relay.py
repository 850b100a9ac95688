"""The chat and completions stream relay used when output monitors apply (the loop they
share with the Responses API is ``gateway.policy_relay``).

Each upstream read is parsed into items (one event's share of one choice, with every
text a client reads: content, reasoning, tool-call arguments, logprobs), handed to the
streaming policy (``gateway.stream_policy``), and what the policy lets out is written
back as one write per read: the upstream's own bytes where an event leaves whole and
untouched, a re-encoded chunk where it leaves in parts or masked.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.answer import ProtocolViolation, choice_fields, choices_of
from gateway.errors import GatewayError, UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.policy_relay import PolicyRelay, Written
from gateway.recorder import StreamRecorder
from gateway.relay import end_of_stream_error
from gateway.settings import StreamingSpec
from gateway.sse import SSEEvent, encode_event
from gateway.stream_policy import Item, Out, Stop
from gateway.upstream import UpstreamCall
from monitors.pipeline import MonitorPipeline

DONE_EVENT = b"data: [DONE]\n\n"


class MonitoredRelay(PolicyRelay):
    def __init__(self, call: UpstreamCall, rec: StreamRecorder, *, pipeline: MonitorPipeline,
                 streaming: StreamingSpec, metrics: GatewayMetrics, idle_s: float) -> None:
        super().__init__(call, rec, route=rec.ctx.route, pipeline=pipeline,
                         streaming=streaming, metrics=metrics, idle_s=idle_s)
        self._template: dict[str, Any] = {}

    # -- parse ----------------------------------------------------------------------
    async def _on_read(self, events: list[SSEEvent]) -> Written:
        """What one upstream read lets out: (bytes, carries text) pairs."""
        out: Written = []
        items: list[Item] = []
        for event in events:
            if event.is_done:
                out += await self._let_out(items)
                if not self._finished:
                    out.append((DONE_EVENT, False))
                    self._finished = True
                return out
            try:
                chunk = orjson.loads(event.data)
                parsed = self._items(chunk, event.raw)
            except (orjson.JSONDecodeError, ProtocolViolation) as exc:
                out += self._fail(UpstreamError(f"upstream {self._call.replica.url} sent an "
                                                f"event that is not a completion chunk ({exc})"),
                                  "protocol")
                return out
            if parsed:
                items += parsed
                continue
            # Usage or error events: everything held before them leaves first.
            out += await self._let_out(items)
            items = []
            if self._finished:
                return out
            if "usage" in chunk:
                self._rec.usage(chunk["usage"])
            out.append((event.raw, False))
        out += await self._run(self._policy.feed(items))
        return out

    def _items(self, chunk: Any, raw: bytes) -> list[Item]:
        choices = choices_of(chunk, streamed=True)
        if not choices:
            return []
        self._template = chunk
        only = len(choices) == 1
        now = self._rec.clock()
        items = []
        for choice in choices:
            texts = [(f.key, f.text) for f in choice_fields(self._ctx.route, choice,
                                                             streamed=True)]
            single = chunk if only else {**chunk, "choices": [choice]}
            items.append(Item(choice.get("index", 0), single, raw if only else None, texts,
                              choice.get("finish_reason") is not None, now))
        return items

    # -- encode ---------------------------------------------------------------------
    def _encode(self, out: Out) -> tuple[bytes, bool]:
        item = out.item
        chunk = out.chunk
        if item.finished and self._ctx.verdict_fields():
            # The response headers left before the output was checked: the finishing
            # chunk carries the output annotate flags and redactions.
            chunk = chunk if chunk is not None else orjson.loads(orjson.dumps(item.chunk))
            chunk.update(self._ctx.verdict_fields())
        if chunk is None:
            return item.raw, item.has_text
        return encode_event(orjson.dumps(chunk)), item.has_text

    def _block_events(self, stop: Stop) -> Written:
        """End the stream with finish_reason content_filter."""
        choice: dict[str, Any] = {"index": stop.index, "finish_reason": "content_filter",
                                  "logprobs": None}
        if self._ctx.route == "chat":
            choice["delta"] = {}
        else:
            choice["text"] = ""
        chunk = {key: self._template.get(key) for key in ("id", "object", "created", "model")}
        chunk["choices"] = [choice]
        chunk.update(self._ctx.verdict_fields())
        return [(encode_event(orjson.dumps(chunk)), False), (DONE_EVENT, False)]

    def _error_event(self, error: GatewayError, kind: str) -> bytes:
        return end_of_stream_error(self._rec, error, kind)
