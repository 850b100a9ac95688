"""The stream relay used when output monitors apply: parse, window, check, re-encode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.context import RequestContext
from gateway.errors import UpstreamError, sse_error_event
from gateway.holdback import HoldbackWindow, Release, StreamFirstTracker
from gateway.metrics import GatewayMetrics
from gateway.protocol import choice_text, set_choice_text
from gateway.relay import StreamObserver, midstream_error
from gateway.sse import SSEParser, encode_event
from gateway.upstream import UpstreamCall
from monitors.config import StreamingSpec
from monitors.pipeline import MonitorOverloaded, MonitorPipeline, StageResult
from monitors.redact import apply_redactions

log = logging.getLogger("taxgate.relay")

DONE_EVENT = b"data: [DONE]\n\n"


class _Event:
    """A parsed upstream event kept with its raw bytes (re-sent as-is when unchanged)."""

    __slots__ = ("chunk", "raw")

    def __init__(self, chunk: dict[str, Any], raw: bytes) -> None:
        self.chunk = chunk
        self.raw = raw


class MonitoredRelay:
    def __init__(self, call: UpstreamCall, obs: StreamObserver, *, pipeline: MonitorPipeline,
                 streaming: StreamingSpec, metrics: GatewayMetrics, idle_s: float) -> None:
        self._call = call
        self._obs = obs
        self._ctx: RequestContext = obs.ctx
        self._pipeline = pipeline
        self._metrics = metrics
        self._idle_s = idle_s
        # Shadow-only output monitors never hold text back: they only watch.
        self._mode = streaming.mode if pipeline.enforces("output") else "stream_first"
        self._spec = streaming
        self._windows: dict[int, HoldbackWindow] = {}
        self._trackers: dict[int, StreamFirstTracker] = {}
        self._behind: dict[int, tuple[asyncio.Task, int]] = {}
        self._template: dict[str, Any] = {}
        self._last_emit = 0.0
        self._finished = False  # [DONE] (or a cut) was sent to the client
        self._cut = False  # ended early by a block or a failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = SSEParser()
        try:
            async for raw in self._call.response.aiter_raw():
                now = self._obs.clock()
                if self._ctx.upstream_first is None:
                    self._ctx.upstream_first = now
                if self._finished:
                    continue  # after [DONE]: read to the end so the connection is reused
                for event in parser.feed(raw):
                    for out in await self._on_event(event.data, event.raw):
                        yield out
                    if self._finished:
                        break
                if self._cut:
                    return  # blocked or failed: the upstream request was closed on purpose
            self._ctx.upstream_last = self._obs.clock()
            for event in parser.flush() if not self._finished else ():
                for out in await self._on_event(event.data, event.raw):
                    yield out
            if not self._finished:
                for out in await self._fail(UpstreamError("upstream stream ended without [DONE]")):
                    yield out
        except httpx.HTTPError as exc:
            self._obs.upstream_errors("midstream")
            for out in await self._fail(midstream_error(exc, self._call.replica.url, self._idle_s)):
                yield out
        finally:
            for task, _start in self._behind.values():
                task.cancel()
            await self._call.aclose()

    # -- events -------------------------------------------------------------------
    async def _on_event(self, data: bytes, raw: bytes) -> list[bytes]:
        if data == b"[DONE]":
            out = await self._flush_all()
            if not self._finished:
                out.append(DONE_EVENT)
                self._finished = True
            return out
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._obs.upstream_errors("protocol")
            return await self._fail(UpstreamError("upstream sent an event that is not JSON"))
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices:
            # Usage or error events: everything held before them goes first.
            out = await self._flush_all()
            if self._finished:
                return out
            if isinstance(chunk, dict) and chunk.get("usage"):
                usage = chunk["usage"]
                self._ctx.prompt_tokens = usage.get("prompt_tokens") or 0
                self._ctx.completion_tokens = usage.get("completion_tokens") or 0
            out.append(self._sent(raw))
            return out
        self._template = chunk
        choice = choices[0]
        index = choice.get("index", 0)
        text = choice_text(self._ctx.route, choice, streamed=True) or ""
        finished = choice.get("finish_reason") is not None
        if self._mode == "holdback":
            return await self._holdback(index, text, _Event(chunk, raw), finished)
        return await self._stream_first(index, text, raw, finished)

    # -- holdback -----------------------------------------------------------------
    async def _holdback(self, index: int, text: str, event: _Event, finished: bool) -> list[bytes]:
        window = self._windows.get(index)
        if window is None:
            window = self._windows[index] = HoldbackWindow(
                self._spec.window_chars, self._spec.overlap_chars, self._spec.max_hold_ms / 1000)
        ready = window.add(text, event, self._obs.clock())
        if finished or ready:
            return await self._check_window(index, window, final=finished)
        return []

    async def _check_window(self, index: int, window: HoldbackWindow, *,
                            final: bool) -> list[bytes]:
        text, _offset = window.check_text()
        result = await self._check(text)
        if result is None or result.blocked_by is not None:
            return await self._block(index, 0)
        release = window.release(result.redactions[0] if result.redactions else [],
                                 final=final)
        return self._emit(release)

    def _emit(self, release: Release) -> list[bytes]:
        if not release.items:
            return []
        now = self._obs.clock()
        delay = now - release.items[0].arrived_at
        self._metrics.stream_holdback.observe(delay)
        self._metrics.stream_held_tokens.observe(len(release.items))
        if self._ctx.first_sent is None:
            # What hold-back adds to the request is the wait before its first release;
            # later releases overlap with generation (each is in stream_holdback_seconds).
            self._ctx.add_phase("holdback", delay)
        if not release.redaction_spans:
            return [self._sent(self._with_flags(item.payload)) for item in release.items]
        # Redacted text goes out as one chunk in place of the text chunks it came from: the
        # last of them, which may be the one carrying finish_reason.
        redacted = apply_redactions(release.text, release.redaction_spans)
        last_text = [item for item in release.items if item.text][-1]
        out: list[bytes] = []
        for item in release.items:
            if not item.text:
                out.append(self._sent(self._with_flags(item.payload)))
            elif item is last_text:
                chunk = item.payload.chunk
                set_choice_text(self._ctx.route, chunk["choices"][0], redacted, streamed=True)
                out.append(self._sent(self._with_flags(
                    _Event(chunk, encode_event(orjson.dumps(chunk))))))
        return out

    async def _flush_all(self) -> list[bytes]:
        out: list[bytes] = []
        for index, window in list(self._windows.items()):
            if window.held and not self._finished:
                out += await self._check_window(index, window, final=True)
        for index in list(self._trackers):
            if not self._finished:
                out += await self._final_behind_check(index)
        return out

    # -- stream_first ---------------------------------------------------------------
    async def _stream_first(self, index: int, text: str, raw: bytes,
                            finished: bool) -> list[bytes]:
        blocked = await self._collect_behind(index, wait=finished)
        if blocked:
            return blocked
        tracker = self._trackers.get(index)
        if tracker is None:
            tracker = self._trackers[index] = StreamFirstTracker(self._spec.window_chars,
                                                                 self._spec.overlap_chars)
        if finished:
            tracker.add(text)  # vLLM sends the last token with the finish_reason
            out = await self._final_behind_check(index, unsent=1)
            if self._finished:
                return out
            return out + [self._sent(self._with_flags(_Event(self._template, raw)))]
        due = tracker.add(text)
        out = [self._sent(raw)]
        if due and index not in self._behind:
            window_text, start = tracker.next_check()
            self._behind[index] = (asyncio.create_task(self._check(window_text)), start)
        return out

    async def _collect_behind(self, index: int, *, wait: bool) -> list[bytes]:
        pending = self._behind.get(index)
        if pending is None or (not wait and not pending[0].done()):
            return []
        task, start = self._behind.pop(index)
        result = await task
        if result is None or result.blocked_by is not None:
            leaked = self._trackers[index].leaked_items(start)
            self._metrics.stream_leaked_tokens.inc(leaked)
            return await self._block(index, leaked)
        return []

    async def _final_behind_check(self, index: int, unsent: int = 0) -> list[bytes]:
        out = await self._collect_behind(index, wait=True)
        tracker = self._trackers[index]
        if out or not tracker.unchecked:
            return out
        window_text, start = tracker.next_check()
        result = await self._check(window_text)
        if result is None or result.blocked_by is not None:
            leaked = max(0, tracker.leaked_items(start) - unsent)
            self._metrics.stream_leaked_tokens.inc(leaked)
            return await self._block(index, leaked)
        return []

    # -- shared ---------------------------------------------------------------------
    async def _check(self, text: str) -> StageResult | None:
        """Output monitors on one window; None when a fail-closed monitor was overloaded."""
        started = self._obs.clock()
        try:
            result = await self._pipeline.check("output", [text],
                                                request_id=self._ctx.request_id,
                                                context={"route": self._ctx.route,
                                                         "model": self._ctx.model})
        except MonitorOverloaded as exc:
            # A fail-closed monitor could not take the window: cut rather than leak.
            log.warning("request %s: monitor %s overloaded, stream cut", self._ctx.request_id,
                        exc.monitor_id)
            return None
        finally:
            self._ctx.add_phase("output_monitors", self._obs.clock() - started)
        for decision in result.annotations:
            if decision.monitor_id not in self._ctx.flags:
                self._ctx.flags.append(decision.monitor_id)
        return result

    async def _block(self, index: int, leaked: int) -> list[bytes]:
        """End the stream with finish_reason content_filter and cancel the upstream."""
        self._metrics.stream_blocks.labels(self._mode).inc()
        choice: dict[str, Any] = {"index": index, "finish_reason": "content_filter",
                                  "logprobs": None}
        if self._ctx.route == "chat":
            choice["delta"] = {}
        else:
            choice["text"] = ""
        chunk = {key: self._template.get(key) for key in ("id", "object", "created", "model")}
        chunk["choices"] = [choice]
        self._finished = self._cut = True
        await self._call.aclose()
        return [self._sent(encode_event(orjson.dumps(chunk))), DONE_EVENT]

    def _with_flags(self, event: _Event) -> bytes:
        """The event as sent: the finishing chunk carries the output annotate flags, since
        the response headers left before the output was checked."""
        if not self._ctx.flags or event.chunk["choices"][0].get("finish_reason") is None:
            return event.raw
        event.chunk["taxgate_flags"] = list(self._ctx.flags)
        return encode_event(orjson.dumps(event.chunk))

    async def _fail(self, error) -> list[bytes]:
        self._ctx.status = error.status
        self._finished = self._cut = True
        log.warning("request %s: %s", self._ctx.request_id, error.message)
        return [sse_error_event(error)]

    def _sent(self, data: bytes) -> bytes:
        now = self._obs.clock()
        if self._ctx.first_sent is None:
            self._ctx.first_sent = now
        else:
            self._obs.itl.observe(now - self._last_emit)
        self._last_emit = now
        self._ctx.last_sent = now
        return data
