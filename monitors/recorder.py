"""One place every verdict is recorded: the monitor metrics, the audit event sink and an
observer (the gateway's traces) that sees every verdict and skip with its request's context.

Streams record a check per token, so each metric's labelled child is resolved once and
kept (resolving costs more than the update).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from monitors.metrics import MonitorMetrics
from monitors.verdicts import NO_CONTEXT, Decision

__all__ = ["EventSink", "VerdictObserver", "VerdictRecorder"]

logger = logging.getLogger(__name__)

# What the caller records verdicts with (the gateway: its audit log): a hit or a failure.
EventSink = Callable[[Decision, str], None]


class VerdictObserver(Protocol):
    """Sees every verdict (passes, shadow and late ones too) and every skip, with the
    ``context`` the caller of ``check`` gave. Called on the event loop: keep it cheap."""

    def verdict(self, verdict: Decision, context: Mapping[str, str]) -> None: ...

    def skipped(self, monitor_id: str, stage: str, reason: str, context: Mapping[str, str]) -> None: ...


class VerdictRecorder:
    def __init__(
        self, metrics: MonitorMetrics, on_event: EventSink | None = None, observer: VerdictObserver | None = None
    ) -> None:
        self.metrics = metrics
        self._on_event = on_event
        self._observer = observer
        self._children: dict[tuple, object] = {}

    def child(self, metric, *values: str):
        """A metric's labelled child (label values in the metric's label order), resolved once."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def ready(self, monitor_id: str, stage: str) -> None:
        """Create an enforcing monitor's coverage children up front, so coverage reads 1
        (not "no data") before any skip."""
        self.child(self.metrics.in_time, monitor_id, stage)
        for reason in ("predicted", "late"):
            self.child(self.metrics.skipped, monitor_id, stage, reason)

    def duration(self, monitor_id: str, stage: str, seconds: float) -> None:
        self.child(self.metrics.duration, monitor_id, stage).observe(seconds)

    def skipped(self, monitor_id: str, stage: str, reason: str, context: Mapping[str, str] = NO_CONTEXT) -> None:
        self.child(self.metrics.skipped, monitor_id, stage, reason).inc()
        if self._observer is not None:
            self._observe(self._observer.skipped, monitor_id, stage, reason, context)

    def hold_failed(self, monitor_id: str, stage: str) -> None:
        self.metrics.errors.labels(monitor=monitor_id, stage=stage, kind="error").inc()

    def in_time(self, decision: Decision, request_id: str) -> None:
        """An enforcing verdict the stage waited for."""
        if decision.error is None:
            self.child(self.metrics.in_time, decision.monitor_id, decision.stage).inc()
        self.record(decision, request_id)

    def record(self, decision: Decision, request_id: str) -> None:
        """Count the verdict; hand a hit or a failure to the event sink."""
        self.child(self.metrics.verdicts, decision.monitor_id, decision.stage, decision.action).inc()
        labels = {"monitor": decision.monitor_id, "stage": decision.stage}
        if decision.error is not None:
            self.metrics.errors.labels(kind=decision.error, **labels).inc()
        if decision.failed_open:
            self.metrics.fail_open.labels(**labels).inc()
        if self._observer is not None:
            self._observe(self._observer.verdict, decision, decision.context)
        if (decision.hit or decision.error is not None) and self._on_event is not None:
            try:
                self._on_event(decision, request_id)
            except Exception:  # the audit sink failing must not fail the request; say so loudly
                logger.exception("audit event sink failed for monitor %r", decision.monitor_id)

    @staticmethod
    def _observe(call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except Exception:  # tracing failing must not fail the request; say so loudly
            logger.exception("verdict observer failed")
