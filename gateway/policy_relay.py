"""The read loop of the relays that apply output monitors: upstream reads -> the route's
parse -> the streaming policy (``gateway.stream_policy``) -> one write per read, and the
same bookkeeping however the stream ends (finished, blocked, failed, client gone).

A route's relay (``monitored_relay`` for chat and completions, ``responses_relay`` for the
Responses API) subclasses ``PolicyRelay`` and supplies only what differs:

- ``_on_read(events)``: one read's events as ``(bytes, carries text)`` pairs, feeding
  the policy its items (``_let_out`` sends everything held before a pass-through event);
- ``_encode(out)``: a policy output as bytes;
- ``_block_events(stop)``: the events that end a blocked stream;
- ``_error_event(error, kind)``: counts a fault (``relay.end_of_stream_error``) and
  encodes the event that ends the stream with it;
- ``END``: the marker of a complete stream, named when the upstream ends without it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar

import httpx

from gateway.errors import GatewayError, UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.recorder import StreamRecorder
from gateway.relay import midstream_error
from gateway.settings import StreamingSpec
from gateway.sse import SSEEvent, SSEParser
from gateway.stream_policy import HoldBack, Item, Out, Step, Stop, StreamFirst
from gateway.upstream import UpstreamCall
from monitors.pipeline import MonitorOverloaded, MonitorPipeline, StageResult

log = logging.getLogger("taxgate.relay")

Written = list[tuple[bytes, bool]]  # what leaves: (bytes, carries text) pairs


class PolicyRelay:
    END: ClassVar[str] = "[DONE]"

    def __init__(self, call: UpstreamCall, rec: StreamRecorder, *, route: str,
                 pipeline: MonitorPipeline, streaming: StreamingSpec, metrics: GatewayMetrics,
                 idle_s: float) -> None:
        self._call = call
        self._rec = rec
        self._ctx = rec.ctx
        self._pipeline = pipeline
        self._metrics = metrics
        self._idle_s = idle_s
        # Shadow-only output monitors never hold text back: they only watch.
        self._mode = streaming.mode if pipeline.enforces("output") else "stream_first"
        reach = pipeline.context_chars("output")
        if self._mode == "holdback":
            self._policy: HoldBack | StreamFirst = HoldBack(
                route, self._check, self._hold, overlap=streaming.overlap_chars,
                max_hold_chars=streaming.max_hold_chars, at_max_hold=streaming.at_max_hold,
                clock=rec.clock, on_release=self._released, reach=reach)
        else:
            self._policy = StreamFirst(route, self._check, self._hold,
                                       overlap=streaming.overlap_chars, reach=reach)
        self._context = {"route": route, "model": self._ctx.model}  # for the audit log
        self._finished = False  # the end, a block or a failure was sent: nothing more goes
        self._cut = False  # a block or a failure: the upstream request was closed on purpose

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = SSEParser()
        try:
            async for raw in self._call.response.aiter_raw():
                self._rec.read()
                if self._finished:
                    continue  # after the end: read to the end so the connection is reused
                out = await self._on_read(parser.feed(raw))
                if out:
                    yield self._write(out)
                if self._cut:
                    return
                if self._finished:
                    self._rec.delivered()
            self._rec.upstream_done()
            if not self._finished:
                out = await self._on_read(parser.flush())
                if not self._finished:
                    out += self._fail(UpstreamError(f"upstream {self._call.replica.url} ended "
                                                    f"the stream without {self.END}"), "protocol")
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

    # -- the route's part ---------------------------------------------------------------
    async def _on_read(self, events: list[SSEEvent]) -> Written:
        raise NotImplementedError

    def _encode(self, out: Out) -> tuple[bytes, bool]:
        raise NotImplementedError

    def _block_events(self, stop: Stop) -> Written:
        raise NotImplementedError

    def _error_event(self, error: GatewayError, kind: str) -> bytes:
        raise NotImplementedError

    # -- policy -------------------------------------------------------------------------
    async def _run(self, step_awaitable: Awaitable[Step]) -> Written:
        if self._finished:
            step_awaitable.close()
            return []
        step: Step = await step_awaitable
        out = [self._encode(o) for o in step.out]
        if step.stop is not None:
            out += await self._block(step.stop)
        return out

    async def _let_out(self, items: list[Item]) -> Written:
        """``items``, then everything still held: what must leave before an event that
        does not go through the policy."""
        out = await self._run(self._policy.feed(items))
        return out + await self._run(self._policy.drain())

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
        self._ctx.note(result)
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

    # -- the end ------------------------------------------------------------------------
    def _write(self, out: Written) -> bytes:
        self._rec.sent(sum(1 for _, text in out if text))
        return b"".join(data for data, _ in out)

    async def _block(self, stop: Stop) -> Written:
        """Count the block, end the stream the route's way and cancel the upstream."""
        self._metrics.stream_blocks.labels(self._mode).inc()
        if stop.leaked:
            self._metrics.stream_leaked_tokens.inc(stop.leaked)
        if stop.reason == "hold_cap":
            self._metrics.stream_hold_cap.labels("block").inc()
        out = self._block_events(stop)
        self._finished = self._cut = True
        await self._call.aclose()
        return out

    def _fail(self, error: GatewayError, kind: str) -> Written:
        self._finished = self._cut = True
        return [(self._error_event(error, kind), False)]
