"""What the audit log records for a verdict of the real pipeline: above all, a failed
monitor is never recorded as a pass."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from gateway.audit.event import AuditEvent, event_from_decision, recorded_action
from monitors.base import AsyncMonitor, Finding, Monitor
from monitors.config import MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry


class Raising(Monitor):
    def check(self, texts):
        raise RuntimeError("model crashed")


class Hanging(AsyncMonitor):
    async def check(self, texts):
        await asyncio.Event().wait()


class Flagging(Monitor):
    def check(self, texts):
        return [Finding(score=1.0, labels={"bad": 1.0}) for _ in texts]


async def audited(spec: dict, trace: dict[str, str] | None = None) -> list[AuditEvent]:
    """The audit events one input check with this single monitor produces."""
    registry = MonitorRegistry()
    registry.register("raising", lambda _: Raising())
    registry.register("hanging", lambda _: Hanging())
    registry.register("flagging", lambda _: Flagging())
    events: list[AuditEvent] = []
    pipeline = MonitorPipeline(
        [MonitorSpec(stages=["input"], **spec)],
        metrics=MonitorMetrics(CollectorRegistry()),
        registry=registry,
        on_event=lambda decision, rid: events.append(event_from_decision(decision, rid, ts=1.0, replica="gw-0")),
    )
    await pipeline.start()
    try:
        await pipeline.check(
            "input", ["some text"], request_id="req-1", context={"route": "chat", "model": "tiny", **(trace or {})}
        )
    finally:
        await pipeline.close()  # waits for shadow checks, whose verdicts are audited
    return events


@pytest.mark.parametrize(
    "spec, action, error",
    [
        ({"name": "raising", "on_error": "open"}, "error", "error"),
        ({"name": "hanging", "on_error": "open", "timeout_ms": 20}, "error", "timeout"),
        ({"name": "raising", "action": "shadow"}, "error", "error"),
        ({"name": "raising", "on_error": "closed"}, "block", "error"),
        ({"name": "flagging", "action": "redact"}, "redact", None),
        ({"name": "flagging", "action": "shadow"}, "shadow", None),
    ],
)
async def test_the_recorded_action_says_what_the_gateway_did(spec, action, error):
    [event] = await audited(spec)
    assert (event.action, event.error) == (action, error)
    assert (event.request_id, event.stage, event.monitor, event.route, event.model, event.replica) == (
        "req-1",
        "input",
        spec["name"],
        "chat",
        "tiny",
        "gw-0",
    )
    assert event.hit == (error is None)
    assert (event.trace_id, event.span_id) == ("", "")  # tracing off


async def test_the_request_trace_reaches_the_event():
    trace = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    [event] = await audited({"name": "flagging", "action": "redact"}, trace=trace)
    assert (event.trace_id, event.span_id) == (trace["trace_id"], trace["span_id"])


def test_only_a_failed_pass_is_renamed():
    assert recorded_action("pass", "timeout") == "error"
    assert recorded_action("block", "timeout") == "block"
    assert recorded_action("redact", None) == "redact"
