"""The stream relay used when output monitors apply: parse -> policy -> encode.

Each upstream read is parsed into items (one event's share of one choice, with every
text a client reads: content, reasoning, tool-call arguments, logprobs), handed to the
streaming policy (``gateway.stream_policy``), and what the policy lets out is written
back as one write per read: the upstream's own bytes where an event leaves whole and
untouched, a re-encoded chunk where it leaves in parts or masked.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.answer import ProtocolViolation, choice_fields, choices_of
from gateway.errors import UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.recorder import StreamRecorder
from gateway.relay import end_of_stream_error, midstream_error
from gateway.settings import StreamingSpec
from gateway.sse import SSEEvent, SSEParser, encode_event
from gateway.stream_policy import HoldBack, Item, Out, Step, Stop, StreamFirst
from gateway.upstream import UpstreamCall
from monitors.pipeline import MonitorOverloaded, MonitorPipeline, StageResult

log = logging.getLogger("taxgate.relay")

DONE_EVENT = b"data: [DONE]\n\n"


class MonitoredRelay:
    def __init__(self, call: UpstreamCall, rec: StreamRecorder, *, pipeline: MonitorPipeline,
                 streaming: StreamingSpec, metrics: GatewayMetrics, idle_s: float) -> None:
        self._call = call
        self._rec = rec
        self._ctx = rec.ctx
        self._pipeline = pipeline
        self._metrics = metrics
        self._idle_s = idle_s
        # Shadow-only output monitors never hold text back: they only watch.
        self._mode = streaming.mode if pipeline.enforces("output") else "stream_first"
        route = self._ctx.route
        if self._mode == "holdback":
            self._policy: HoldBack | StreamFirst = HoldBack(
                route, self._check, self._hold, overlap=streaming.overlap_chars,
                max_hold_chars=streaming.max_hold_chars, at_max_hold=streaming.at_max_hold,
                clock=rec.clock, on_release=self._released)
        else:
            self._policy = StreamFirst(route, self._check, self._hold,
                                       overlap=streaming.overlap_chars)
        self._template: dict[str, Any] = {}
        self._context = {"route": route, "model": self._ctx.model}  # for the audit log
        self._finished = False  # [DONE], a block or a failure was sent: nothing more goes
        self._cut = False  # a block or a failure: the upstream request was closed on purpose

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = SSEParser()
        try:
            async for raw in self._call.response.aiter_raw():
                self._rec.read()
                if self._finished:
                    continue  # after [DONE]: read to the end so the connection is reused
                out = await self._on_read(parser.feed(raw))
                if out:
                    yield self._write(out)
                if self._cut:
                    return
            self._rec.upstream_done()
            if not self._finished:
                out = await self._on_read(parser.flush())
                if not self._finished:
                    out += self._fail(UpstreamError(f"upstream {self._call.replica.url} ended "
                                                    "the stream without [DONE]"), "protocol")
                yield self._write(out)
        except httpx.HTTPError as exc:
            error = midstream_error(exc, self._call.replica.url, self._idle_s)
            yield self._write(self._fail(error, "midstream"))
        finally:
            stats = self._policy.stats
            self._metrics.stream_checks.observe(stats.checks)
            if stats.hold_cap_released:
                self._metrics.stream_hold_cap.labels("release").inc(stats.hold_cap_released)
            self._rec.close()
            await self._policy.close()
            await self._call.aclose()

    # -- parse ----------------------------------------------------------------------
    async def _on_read(self, events: list[SSEEvent]) -> list[tuple[bytes, bool]]:
        """What one upstream read lets out: (bytes, carries text) pairs."""
        out: list[tuple[bytes, bool]] = []
        items: list[Item] = []
        for event in events:
            if event.is_done:
                out += await self._run(self._policy.feed(items))
                out += await self._run(self._policy.drain())
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
            out += await self._run(self._policy.feed(items))
            items = []
            out += await self._run(self._policy.drain())
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
            # A fail-closed monitor could not take the check: cut rather than leak.
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
            # What hold-back adds to the request is the wait before its first release;
            # later releases overlap with generation (each is in stream_holdback_seconds).
            self._ctx.add_phase("holdback", delay)

    # -- encode ---------------------------------------------------------------------
    def _encode(self, out: Out) -> tuple[bytes, bool]:
        item = out.item
        chunk = out.chunk
        if item.finished and self._ctx.flags:
            # The response headers left before the output was checked: the finishing
            # chunk carries the output annotate flags.
            chunk = chunk if chunk is not None else orjson.loads(orjson.dumps(item.chunk))
            chunk["taxgate_flags"] = list(self._ctx.flags)
        if chunk is None:
            return item.raw, item.has_text
        return encode_event(orjson.dumps(chunk)), item.has_text

    def _write(self, out: list[tuple[bytes, bool]]) -> bytes:
        self._rec.sent(sum(1 for _, text in out if text))
        return b"".join(data for data, _ in out)

    async def _block(self, stop: Stop) -> list[tuple[bytes, bool]]:
        """End the stream with finish_reason content_filter and cancel the upstream."""
        self._metrics.stream_blocks.labels(self._mode).inc()
        if stop.leaked:
            self._metrics.stream_leaked_tokens.inc(stop.leaked)
        if stop.reason == "hold_cap":
            self._metrics.stream_hold_cap.labels("block").inc()
        choice: dict[str, Any] = {"index": stop.index, "finish_reason": "content_filter",
                                  "logprobs": None}
        if self._ctx.route == "chat":
            choice["delta"] = {}
        else:
            choice["text"] = ""
        chunk = {key: self._template.get(key) for key in ("id", "object", "created", "model")}
        chunk["choices"] = [choice]
        if self._ctx.flags:
            chunk["taxgate_flags"] = list(self._ctx.flags)
        self._finished = self._cut = True
        await self._call.aclose()
        return [(encode_event(orjson.dumps(chunk)), False), (DONE_EVENT, False)]

    def _fail(self, error: UpstreamError, kind: str) -> list[tuple[bytes, bool]]:
        self._finished = self._cut = True
        return [(end_of_stream_error(self._rec, error, kind), False)]
