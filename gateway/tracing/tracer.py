"""The spans of each request, hooked into the request path at four points.

``Proxy.handle`` starts a request's ``RequestTrace`` (a SERVER span continuing the client's
``traceparent``, or a new trace); the upstream call starts its CLIENT span and carries its
``traceparent`` to vLLM; the monitor pipeline reports every verdict and skip to the
``Tracing`` object (the pipeline's observer), which folds them into the request's tallies;
``Proxy._finish`` (a stream's end included) ends the spans with the times the request
context already keeps. So a stream costs tracing nothing per chunk: only the monitor
checks are folded in, one dict lookup and a few additions each.

A request that is not sampled carries ``traceparent`` (flag 0) upstream and nothing else:
no ids in its audit rows, no tallies.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from opentelemetry import trace as otel
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.tracing.attributes import (
    Finished,
    client_span_name,
    request_end_attributes,
    request_start_attributes,
    server_span_name,
    stream_finish_reasons,
    upstream_attributes,
)
from gateway.tracing.export import Export
from gateway.tracing.settings import TracingSettings
from gateway.tracing.tally import MonitorTally, Tallies, Verdict

log = logging.getLogger("taxgate.tracing")
NO_IDS: Mapping[str, str] = {}


class Tracing:
    """The app's tracer: built in the lifespan when ``tracing`` is enabled, shut down there."""

    def __init__(
        self,
        settings: TracingSettings,
        *,
        on_exported: Callable[[int], None],
        on_failed: Callable[[int], None],
        exporter: SpanExporter | None = None,
    ) -> None:
        # Each worker process (serve --workers N) builds its own, after the fork.
        instance = f"{socket.gethostname()}-{os.getpid()}"
        self._shutdown_s = settings.timeout_s
        self._export = Export(
            settings, on_exported=on_exported, on_failed=on_failed, instance=instance, exporter=exporter
        )
        self._tracer = self._export.provider.get_tracer("taxgate")
        self._propagator = TraceContextTextMapPropagator()
        # Requests whose spans are open, by their SERVER span id (request ids may come from
        # clients and repeat; span ids do not).
        self._active: dict[str, RequestTrace] = {}

    def start(
        self, headers: Mapping[str, str], *, route: str, path: str, request_id: str, started: float, now: float
    ) -> RequestTrace:
        """The SERVER span of a request that arrived at ``started``; ``now`` is the same
        clock (the request context's, perf_counter) read just before this call."""
        anchor = (time.time_ns(), now)
        parent = self._propagator.extract(headers)
        span = self._tracer.start_span(
            server_span_name(path),
            context=parent,
            kind=SpanKind.SERVER,
            attributes=request_start_attributes(route, path, request_id),
            start_time=anchor[0] - int((now - started) * 1e9),
        )
        trace = RequestTrace(self, span, anchor)
        if trace.ids:
            self._active[trace.ids["span_id"]] = trace
        return trace

    # -- the monitor pipeline's observer -------------------------------------------------
    def verdict(self, verdict: Verdict, context: Mapping[str, str]) -> None:
        """A monitor verdict of the request whose ids ``context`` carries."""
        span_id = context.get("span_id")
        if span_id is None:
            return  # tracing was on but the request not sampled
        trace = self._active.get(span_id)
        if trace is not None:
            trace.tallies.of(verdict.monitor_id, verdict.stage).verdict(verdict, time.time_ns())
            return
        # A shadow or late check that finished after its request: a span of its own.
        tally = MonitorTally(verdict.monitor_id, verdict.stage)
        tally.verdict(verdict, time.time_ns())
        self.emit(tally, _remote(context), after_request=True)

    def skipped(self, monitor_id: str, stage: str, reason: str, context: Mapping[str, str]) -> None:
        trace = self._active.get(context.get("span_id", ""))
        if trace is not None:
            trace.tallies.of(monitor_id, stage).skip(reason, time.time_ns())

    # -- spans ---------------------------------------------------------------------------
    def child(
        self,
        name: str,
        parent: Any,
        kind: SpanKind,
        start_ns: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> otel.Span:
        return self._tracer.start_span(name, context=parent, kind=kind, start_time=start_ns, attributes=attributes)

    def emit(self, tally: MonitorTally, parent: Any, *, after_request: bool = False) -> None:
        attributes = tally.attributes()
        if after_request:
            attributes["taxgate.monitor.after_request"] = True
        span = self.child(
            f"monitor {tally.monitor_id} {tally.stage}", parent, SpanKind.INTERNAL, tally.start_ns, attributes
        )
        for event in tally.events:
            span.add_event(event.name, event.attributes, timestamp=event.at_ns)
        if tally.errors:
            span.set_status(Status(StatusCode.ERROR, f"monitor {tally.error}"))
        span.end(end_time=max(tally.end_ns, tally.start_ns))

    def inject(self, headers: dict[str, str], span: otel.Span) -> None:
        self._propagator.inject(headers, context=otel.set_span_in_context(span))

    def finished(self, trace: RequestTrace) -> None:
        if trace.ids:
            self._active.pop(trace.ids["span_id"], None)

    def shutdown(self) -> None:
        """Export what is still queued for at most one export timeout: a collector that is
        down must not hold the gateway's exit (what is left is dropped, and said)."""
        worker = threading.Thread(target=self._export.shutdown, name="taxgate-traces-shutdown", daemon=True)
        worker.start()
        worker.join(self._shutdown_s)
        if worker.is_alive():
            log.warning(
                "trace export did not finish within %.1f s at shutdown; the spans still queued are dropped",
                self._shutdown_s,
            )


class RequestTrace:
    """One request's spans. The request path calls ``upstream``, ``answered``, ``finish``."""

    __slots__ = ("_tracing", "_span", "_t0_ns", "_t0", "ids", "tallies", "_client", "_url", "_status")

    def __init__(self, tracing: Tracing, span: otel.Span, anchor: tuple[int, float]) -> None:
        self._tracing = tracing
        self._span = span
        # The request context keeps its own clock (perf_counter): spans need unix ns. One
        # moment read on both clocks converts every other.
        self._t0_ns, self._t0 = anchor
        ids = span.get_span_context()
        # What the request's monitor verdicts carry (audit rows; the observer's lookup).
        self.ids: Mapping[str, str] = (
            {"trace_id": format(ids.trace_id, "032x"), "span_id": format(ids.span_id, "016x")}
            if span.is_recording()
            else NO_IDS
        )
        self.tallies = Tallies()
        self._client: otel.Span | None = None
        self._url: str | None = None
        self._status: int | None = None

    def upstream(self, headers: dict[str, str], route: str, model: str) -> None:
        """The upstream call starts: its CLIENT span, whose ``traceparent`` goes in ``headers``."""
        parent = otel.set_span_in_context(self._span)
        self._client = self._tracing.child(client_span_name(route, model), parent, SpanKind.CLIENT)
        self._tracing.inject(headers, self._client)

    async def watched(self, body: AsyncIterator[bytes], ctx: Finished) -> AsyncIterator[bytes]:
        """``body`` as sent, its finish reasons noted on ``ctx`` (tracing on only: a stream
        without tracing has no such step)."""
        reasons: list[str] = []
        try:
            async for data in body:
                reasons += stream_finish_reasons(data)
                yield data
        finally:
            ctx.finish_reasons = tuple(reasons)
            await body.aclose()  # type: ignore[attr-defined]

    def answered(self, url: str, status: int) -> None:
        """The upstream ``url`` answered with ``status`` (headers in; the body may stream)."""
        self._url, self._status = url, status

    def finish(self, ctx: Finished, now: float) -> None:
        """The request ended at ``now`` (its context's clock): end every span."""
        try:
            end_ns = self._ns(now)
            if self._client is not None:
                self._end_client(ctx, end_ns)
            parent = otel.set_span_in_context(self._span)
            for tally in self.tallies:
                self._tracing.emit(tally, parent)
            self._span.set_attributes(request_end_attributes(ctx))
            if ctx.status >= 500:
                self._span.set_status(Status(StatusCode.ERROR))
            self._span.end(end_time=end_ns)
        finally:
            self._tracing.finished(self)

    def _end_client(self, ctx: Finished, end_ns: int) -> None:
        client = self._client
        assert client is not None
        client.set_attributes(upstream_attributes(ctx, self._url, self._status))
        if ctx.upstream_first is not None:
            client.add_event("first byte", timestamp=self._ns(ctx.upstream_first))
        if self._status is None or self._status >= 400:
            client.set_status(Status(StatusCode.ERROR))
        last = ctx.upstream_last
        client.end(end_time=self._ns(last) if last is not None else end_ns)

    def _ns(self, at: float) -> int:
        return self._t0_ns + int((at - self._t0) * 1e9)


def _remote(context: Mapping[str, str]) -> Any:
    """The context of the request span named by ``context``'s ids, for a child after its end."""
    span_context = otel.SpanContext(
        trace_id=int(context["trace_id"], 16),
        span_id=int(context["span_id"], 16),
        is_remote=False,
        trace_flags=otel.TraceFlags(otel.TraceFlags.SAMPLED),
    )
    return otel.set_span_in_context(otel.NonRecordingSpan(span_context))
