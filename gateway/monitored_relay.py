"""The stream relay when output monitors apply, as one generator: upstream bytes -> SSE
events (``gateway.sse``) -> the endpoint's items (its ``StreamDialect``) -> the stream
policy (``gateway.stream_policy``) -> the dialect's events -> bytes, one write per
upstream read.

An event that is not the policy's (usage, a whole text, the end) first lets out all
text held before it. A block or a fault ends the generator at once (the upstream
request is closed, so vLLM aborts it); the stream's last event ends it after reading
the upstream's body to its end, so the connection is reused. The same bookkeeping
(``StreamRecorder``, metrics, the policy closed) runs however the stream ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import orjson

from gateway.answer import ProtocolViolation
from gateway.context import RequestContext
from gateway.endpoints.base import NO_USAGE, Passing, StreamDialect
from gateway.errors import GatewayError, UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.recorder import StreamRecorder
from gateway.relay import end_of_stream_error, midstream_error
from gateway.sse import SSEEvent, SSEParser
from gateway.stream_policy import Item, Step, Stop, StreamPolicy
from gateway.upstream import UpstreamCall
from monitors.base import MonitorOverloaded
from monitors.pipeline import StageCheck
from monitors.verdicts import StageResult

log = logging.getLogger("taxgate.relay")


class OutputGuard:
    """The output checks of one streamed request: the pipeline's ``StageCheck`` plus what
    the request keeps of them (time spent, annotate flags, redactions); a fail-closed monitor that
    cannot take a check answers None, and the stream stops rather than leak."""

    __slots__ = ("_stage", "_ctx", "_clock", "context_chars", "min_new_chars")

    def __init__(self, stage: StageCheck, rec: StreamRecorder) -> None:
        self._stage = stage
        self._ctx = rec.ctx
        self._clock = rec.clock
        self.context_chars = stage.context_chars
        self.min_new_chars = stage.min_new_chars

    async def check(
        self, texts: Sequence[str], kinds: Sequence[str] | None = None, whole: Sequence[str] | None = None
    ) -> StageResult | None:
        started = self._clock()
        try:
            result = await self._stage.check(texts, kinds, whole)
        except MonitorOverloaded as exc:
            log.warning("request %s: monitor %s overloaded, stream cut", self._ctx.request_id, exc.monitor_id)
            return None
        finally:
            self._ctx.add_phase("output_monitors", self._clock() - started)
        note_flags(result, self._ctx)
        return result

    def hold(self, text: str, start: int, kind: str = "content") -> int:
        return self._stage.hold(text, start, kind)


def note_flags(result: StageResult, ctx: RequestContext) -> None:
    """The annotate and redact monitors that hit, on the request (headers or final chunk)."""
    ctx.note(result)


@dataclass(slots=True)
class Write:
    """What one upstream read lets out: (bytes, carries text) pairs, and whether the
    stream ends with it: ``done`` (its last event), ``cut`` (blocked or failed)."""

    parts: list[tuple[bytes, bool]] = field(default_factory=list)
    end: str | None = None


class _Steps:
    """The steps between the parser and the bytes: one read's events through the dialect
    and the policy, and the stream's ends (block, fault) with their metrics."""

    def __init__(
        self,
        dialect: StreamDialect,
        policy: StreamPolicy,
        guard: OutputGuard,
        call: UpstreamCall,
        rec: StreamRecorder,
        metrics: GatewayMetrics,
    ) -> None:
        self._dialect = dialect
        self._policy = policy
        self._guard = guard
        self._call = call
        self._rec = rec
        self._metrics = metrics

    async def read(self, events: list[SSEEvent]) -> Write:
        write = Write()
        items: list[Item] = []
        for event in events:
            try:
                decoded = self._dialect.decode(event)
            except (orjson.JSONDecodeError, ProtocolViolation) as exc:
                self.fault(
                    write,
                    UpstreamError(
                        f"upstream {self._call.replica.url} sent an event that is not "
                        f"{self._dialect.event_noun} ({exc})"
                    ),
                    "protocol",
                )
                return write
            if not isinstance(decoded, Passing):
                items += decoded
                continue
            await self._let_out(items, write)
            items = []
            if write.end is None:
                await self._pass(decoded, write)
            if write.end is not None:
                return write
        stop = self._take(await self._policy.feed(items), write)
        if stop is not None:  # the usual read takes no await beyond the policy's
            await self._block(stop, write)
        return write

    async def _let_out(self, items: list[Item], write: Write) -> None:
        """``items``, then everything still held: what must leave before an event that does
        not go through the policy."""
        await self._apply(await self._policy.feed(items), write)
        if write.end is None:
            await self._apply(await self._policy.drain(), write)

    async def _pass(self, passing: Passing, write: Write) -> None:
        settled = await self._dialect.settle(passing, self._guard)
        if isinstance(settled, Stop):
            await self._block(settled, write)
            return
        if passing.usage is not NO_USAGE:
            self._rec.usage(passing.usage)
        write.parts += [(data, False) for data in settled]
        if passing.last:
            write.end = "done"

    async def _apply(self, step: Step, write: Write) -> None:
        """A policy step: its releases recorded, what it lets out encoded, its stop obeyed."""
        stop = self._take(step, write)
        if stop is not None:
            await self._block(stop, write)

    def _take(self, step: Step, write: Write) -> Stop | None:
        """A policy step's releases recorded and what it lets out encoded; its stop."""
        if step.released:
            self._released(step.released)
        encode = self._dialect.encode
        write.parts += [(encode(out), out.item.has_text) for out in step.out]
        return step.stop

    def _released(self, released: list[tuple[float, int]]) -> None:
        ctx = self._rec.ctx
        for delay, chars in released:
            self._metrics.stream_holdback.observe(delay)
            self._metrics.stream_held_chars.observe(chars)
            if ctx.first_sent is None:
                # What hold-back adds to the request is the wait before its first release;
                # later releases overlap with generation (each is in stream_holdback_seconds).
                ctx.add_phase("holdback", delay)

    async def _block(self, stop: Stop, write: Write) -> None:
        """Count the block, end the stream the endpoint's way and cancel the upstream."""
        self._metrics.stream_blocks.labels(self._policy.mode).inc()
        if stop.leaked:
            self._metrics.stream_leaked_tokens.inc(stop.leaked)
        if stop.reason == "hold_cap":
            self._metrics.stream_hold_cap.labels("block").inc()
        write.parts += [(data, False) for data in self._dialect.block(stop)]
        write.end = "cut"
        await self._call.aclose()

    def fault(self, write: Write, error: GatewayError, kind: str) -> None:
        """Count, log and end the stream with ``error``."""
        write.parts.append((end_of_stream_error(self._rec, error, kind, self._dialect.error), False))
        write.end = "cut"

    async def close(self) -> None:
        stats = self._policy.stats
        self._metrics.stream_checks.observe(stats.checks)
        if stats.hold_cap_released:
            self._metrics.stream_hold_cap.labels("release").inc(stats.hold_cap_released)
        self._rec.close()
        await self._policy.close()
        await self._call.aclose()


def _sent(rec: StreamRecorder, write: Write) -> bytes:
    parts = write.parts
    if len(parts) == 1:  # one token per read: the usual case
        data, text = parts[0]
        rec.sent(1 if text else 0)
        return data
    rec.sent(sum(1 for _, text in parts if text))
    return b"".join(data for data, _ in parts)


async def relay_monitored(
    call: UpstreamCall,
    rec: StreamRecorder,
    dialect: StreamDialect,
    policy: StreamPolicy,
    guard: OutputGuard,
    *,
    metrics: GatewayMetrics,
    idle_s: float,
) -> AsyncIterator[bytes]:
    steps = _Steps(dialect, policy, guard, call, rec, metrics)
    parser = SSEParser()
    reads = call.response.aiter_raw()
    try:
        write = Write()
        async for raw in reads:
            rec.read()
            write = await steps.read(parser.feed(raw))
            if write.parts:
                yield _sent(rec, write)
            if write.end is not None:
                break
        if write.end == "cut":
            return
        if write.end == "done":
            rec.delivered()
            async for _ in reads:  # read to the end, so the connection is reused
                rec.read()
            rec.upstream_done()
            return
        rec.upstream_done()
        write = await steps.read(parser.flush())
        if write.end is None:
            steps.fault(
                write, UpstreamError(f"upstream {call.replica.url} ended the stream without {dialect.end}"), "protocol"
            )
        yield _sent(rec, write)
    except httpx.HTTPError as exc:
        write = Write()
        steps.fault(write, midstream_error(exc, call.replica.url, idle_s), "midstream")
        yield _sent(rec, write)
    finally:
        await steps.close()
