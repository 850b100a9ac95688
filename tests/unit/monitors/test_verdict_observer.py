"""The pipeline's observer (the gateway's traces) sees every verdict and skip with its context."""

from __future__ import annotations

from monitors.config import BudgetSpec, MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry
from tests.unit.monitors.test_budget import BUDGET_MS, Slow
from tests.waiting import wait_until

CONTEXT = {"route": "chat", "span_id": "b7ad6b7169203331"}


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def verdict(self, verdict, context) -> None:
        self.calls.append(("verdict", verdict.monitor_id, verdict.action, dict(context)))

    def skipped(self, monitor_id, stage, reason, context) -> None:
        self.calls.append(("skipped", monitor_id, reason, dict(context)))


async def pipeline_with(observer: Seen, specs: list[MonitorSpec], metrics, **extra) -> MonitorPipeline:
    registry = MonitorRegistry.from_entry_points()
    slow = Slow()
    registry.register("slow", lambda _spec: slow)
    pipeline = MonitorPipeline(specs, metrics=metrics, registry=registry, observer=observer, **extra)
    await pipeline.start()
    return pipeline


async def test_passes_hits_and_shadow_verdicts_reach_the_observer(metrics):
    seen = Seen()
    pipeline = await pipeline_with(
        seen,
        [
            MonitorSpec(name="pii", stages=["input"], action="redact"),
            MonitorSpec(name="blocklist", id="words", stages=["input"], keywords=["nothing"]),
            MonitorSpec(name="slow", id="shadowed", stages=["input"], action="shadow"),
        ],
        metrics,
    )
    try:
        await pipeline.check("input", ["mail x@example.com"], request_id="r1", context=CONTEXT)
        await wait_until(lambda: len(seen.calls) == 3, what="the shadow verdict")
    finally:
        await pipeline.close()
    assert sorted(seen.calls) == [
        ("verdict", "pii", "redact", CONTEXT),
        ("verdict", "shadowed", "shadow", CONTEXT),
        ("verdict", "words", "pass", CONTEXT),
    ]


async def test_a_late_check_is_seen_as_a_skip_then_as_its_verdict(metrics):
    seen = Seen()
    pipeline = await pipeline_with(
        seen,
        [MonitorSpec(name="slow", id="judge", stages=["input"], degrade="skip", on_error="open")],
        metrics,
        budgets=BudgetSpec(input=BUDGET_MS),
    )
    try:
        result = await pipeline.check("input", ["x"], request_id="r1", context=CONTEXT)
        assert result.skipped == ["judge"]
        assert seen.calls == [("skipped", "judge", "late", CONTEXT)]
        await wait_until(lambda: len(seen.calls) == 2, what="the late verdict")
    finally:
        await pipeline.close()
    assert seen.calls[1] == ("verdict", "judge", "shadow", CONTEXT)


async def test_a_failing_observer_costs_the_trace_not_the_check(metrics, caplog):
    class Broken(Seen):
        def verdict(self, verdict, context) -> None:
            raise RuntimeError("tracing bug")

    pipeline = await pipeline_with(Broken(), [MonitorSpec(name="pii", stages=["input"], action="redact")], metrics)
    try:
        result = await pipeline.check("input", ["mail x@example.com"], request_id="r1", context=CONTEXT)
    finally:
        await pipeline.close()
    assert result.redacted
    assert "verdict observer failed" in caplog.text
