"""The OpenTelemetry SDK, built from ``TracingSettings``: imported only when tracing is on.

Spans leave on the batch processor's own thread: a request only appends to its queue
(bounded; full, it drops). A collector that is slow, down or refusing costs that thread
its retries, never a request. Each failed export is counted (``on_failed``) and, instead of
the exporter's line per retry, one warning per interval carries the count and the last
reason.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from gateway.tracing.settings import TracingSettings

log = logging.getLogger("taxgate.tracing")

# The exporters' own loggers: a line per failed try, which under a dead collector is a
# flood. Their messages become the reason of our one warning per interval.
EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


def sampler(settings: TracingSettings) -> Sampler:
    """The ``OTEL_TRACES_SAMPLER`` of the specification, by name."""
    ratio = TraceIdRatioBased(settings.sampler_arg)
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[settings.sampler]


def otlp_exporter(settings: TracingSettings) -> SpanExporter:
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    url = settings.export_url()
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc(
            endpoint=url, insecure=url.startswith("http://"), headers=headers or None, timeout=settings.timeout_s
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=url, headers=headers or None, timeout=settings.timeout_s)


class _LastMessage(logging.Filter):
    """Keeps the exporter's last message (the reason) and lets none of them through."""

    def __init__(self) -> None:
        super().__init__()
        self.message = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.message = record.getMessage().splitlines()[0][:300]
        return False


class CountingExporter(SpanExporter):
    """``inner``, with every batch counted: ``on_exported(n)`` or ``on_failed(n)``."""

    def __init__(
        self,
        inner: SpanExporter,
        *,
        target: str,
        on_exported: Callable[[int], None],
        on_failed: Callable[[int], None],
        log_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._target = target
        self._on_exported = on_exported
        self._on_failed = on_failed
        self._interval = log_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_log = -math.inf
        self._failed_since = 0
        self.reasons = _LastMessage()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the processor's thread
            self.reasons.message = f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._on_exported(len(spans))
        else:
            self._on_failed(len(spans))
            self._warn(len(spans))
        return result

    def _warn(self, count: int) -> None:
        now = self._clock()
        with self._lock:
            self._failed_since += count
            if now - self._last_log < self._interval:
                return
            total, self._failed_since, self._last_log = self._failed_since, 0, now
        log.warning(
            "trace export to %s failed: %d spans dropped since the last warning (%s); requests are not affected",
            self._target,
            total,
            self.reasons.message or "no reason given",
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class Export:
    """The gateway's own provider (the process-global one is left alone: tests build
    several apps, and a library inside the gateway may have set one) and its exporter.
    ``exporter`` is injectable."""

    def __init__(
        self,
        settings: TracingSettings,
        *,
        on_exported: Callable[[int], None],
        on_failed: Callable[[int], None],
        instance: str,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.exporter = CountingExporter(
            exporter if exporter is not None else otlp_exporter(settings),
            target=settings.export_url(),
            on_exported=on_exported,
            on_failed=on_failed,
            log_interval_s=settings.failure_log_interval_s,
        )
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self.exporter.reasons)
        resource = Resource({"service.name": settings.service_name, "service.instance.id": instance})
        # Shut down by the app's lifespan (bounded), not at interpreter exit, where a dead
        # collector would hold the process.
        self.provider = TracerProvider(resource=resource, sampler=sampler(settings), shutdown_on_exit=False)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                self.exporter,
                max_queue_size=settings.queue_max,
                max_export_batch_size=settings.batch_max,
                schedule_delay_millis=settings.schedule_delay_ms,
                export_timeout_millis=settings.timeout_s * 1000,
            )
        )

    def shutdown(self) -> None:
        """Export what is queued (bounded by the export timeout), then stop the thread."""
        try:
            self.provider.shutdown()
        finally:
            for name in EXPORTER_LOGGERS:
                logging.getLogger(name).removeFilter(self.exporter.reasons)
