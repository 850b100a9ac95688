"""The pipeline under a stage budget: skips counted, late verdicts recorded, fail-closed shed."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from monitors.base import AsyncMonitor, Finding, MonitorOverloaded
from monitors.config import BudgetSpec, MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry
from tests.waiting import wait_until

SLOW_S = 0.12
BUDGET_MS = 30.0


class Slow(AsyncMonitor):
    """Async: flags texts containing 'x', after SLOW_S (a judge at its capacity)."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0

    async def check(self, texts):
        self.calls += 1
        try:
            await asyncio.sleep(SLOW_S)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [Finding(score=1.0 if "x" in text else 0.0) for text in texts]


@pytest.fixture
async def budgeted(metrics):
    made = []

    async def make(spec: dict, events=None) -> tuple[MonitorPipeline, Slow]:
        slow = Slow()
        registry = MonitorRegistry()
        registry.register("slow", lambda _spec: slow)
        pipeline = MonitorPipeline(
            [MonitorSpec(name="slow", stages=["input"], **spec)],
            metrics=metrics,
            registry=registry,
            budgets=BudgetSpec(input=BUDGET_MS),
            on_event=(lambda decision, rid: events.append((decision, rid))) if events is not None else None,
        )
        await pipeline.start()
        made.append(pipeline)
        return pipeline, slow

    yield make
    for pipeline in made:
        await pipeline.close()


def sample(prom, name, **labels) -> float | None:
    return prom.get_sample_value(name, labels)


def test_degrade_skip_with_fail_closed_is_refused_naming_the_keys():
    with pytest.raises(ValidationError) as info:
        MonitorSpec(name="judge", degrade="skip")  # on_error defaults to closed
    message = str(info.value)
    assert "degrade: skip" in message and "on_error: closed" in message and "'judge'" in message
    assert MonitorSpec(name="judge", degrade="skip", on_error="open").degrade == "skip"
    assert MonitorSpec(name="judge").degrade == "never"


async def test_coverage_series_exist_before_any_skip(budgeted, prom):
    await budgeted({"id": "judge", "degrade": "skip", "on_error": "open"})
    labels = {"monitor": "judge", "stage": "input"}
    assert sample(prom, "taxgate_monitor_checks_in_time_total", **labels) == 0.0
    for reason in ("predicted", "late"):
        assert sample(prom, "taxgate_monitor_skipped_total", reason=reason, **labels) == 0.0


async def test_late_check_releases_the_request_and_its_verdict_is_recorded_as_shadow(budgeted, prom):
    events: list = []
    pipeline, _ = await budgeted({"id": "judge", "degrade": "skip", "on_error": "open"}, events)
    result = await pipeline.check("input", ["x marks the spot"], request_id="r1", context={"route": "chat"})
    # Released at the budget, not blocked, well before the check's own SLOW_S.
    assert result.blocked_by is None and result.skipped == ["judge"]
    assert result.elapsed_s < SLOW_S
    labels = {"monitor": "judge", "stage": "input"}
    assert sample(prom, "taxgate_monitor_skipped_total", reason="late", **labels) == 1
    assert not events
    await wait_until(lambda: events, what="the late verdict")
    # The verdict arrived later: audited and counted, as what enforcing *would* have done.
    [(decision, request_id)] = events
    assert (request_id, decision.action, decision.hit, decision.context) == ("r1", "shadow", True, {"route": "chat"})
    assert sample(prom, "taxgate_monitor_verdicts_total", action="shadow", **labels) == 1
    assert sample(prom, "taxgate_monitor_checks_in_time_total", **labels) == 0
    assert not sample(prom, "taxgate_monitor_fail_open_total", **labels)


async def test_predicted_over_budget_is_not_queued_and_counted(budgeted, prom):
    pipeline, slow = await budgeted({"id": "judge", "degrade": "skip", "on_error": "open"})
    await pipeline.check("input", ["learn"], request_id="r0")  # late: teaches ~SLOW_S
    # r0's late verdict (a pass: no 'x') is recorded once its check is done.
    await wait_until(
        lambda: sample(prom, "taxgate_monitor_verdicts_total", monitor="judge", stage="input", action="pass") == 1,
        what="r0's late verdict",
    )
    first = asyncio.create_task(pipeline.check("input", ["a"], request_id="r1"))
    await wait_until(lambda: slow.calls == 2, what="r1's check in flight")  # one ahead of the next
    skipped = await pipeline.check("input", ["x"], request_id="r2")
    assert skipped.skipped == ["judge"] and not skipped.decisions
    assert slow.calls == 2  # r2 never reached the monitor
    labels = {"monitor": "judge", "stage": "input"}
    assert sample(prom, "taxgate_monitor_skipped_total", reason="predicted", **labels) == 1
    await first


async def test_checks_that_fit_are_waited_for_and_counted_in_time(metrics, prom):
    class Quick(AsyncMonitor):
        async def check(self, texts):
            return [Finding(score=1.0 if "x" in t else 0.0) for t in texts]

    registry = MonitorRegistry()
    registry.register("quick", lambda _spec: Quick())
    pipeline = MonitorPipeline(
        [MonitorSpec(name="quick", stages=["input"], degrade="skip", on_error="open")],
        metrics=metrics,
        registry=registry,
        budgets=BudgetSpec(input=BUDGET_MS),
    )
    await pipeline.start()
    try:
        for text in ("a", "b", "x"):
            result = await pipeline.check("input", [text], request_id="r")
        assert result.blocked and not result.skipped
        assert sample(prom, "taxgate_monitor_checks_in_time_total", monitor="quick", stage="input") == 3
    finally:
        await pipeline.close()


async def test_fail_closed_monitor_is_never_skipped_and_sheds_with_retry_after(budgeted, prom):
    pipeline, slow = await budgeted({"id": "guard"})  # on_error: closed, degrade: never
    result = await pipeline.check("input", ["x"], request_id="r0")
    assert result.blocked and not result.skipped  # waited past the budget: never let go
    assert result.elapsed_s >= SLOW_S
    first = asyncio.create_task(pipeline.check("input", ["a"], request_id="r1"))
    await wait_until(lambda: slow.calls == 2, what="r1's check in flight")
    with pytest.raises(MonitorOverloaded) as info:
        await pipeline.check("input", ["x"], request_id="r2")
    assert info.value.retry_after_s == pytest.approx(SLOW_S, rel=0.5)
    assert slow.calls == 2
    labels = {"monitor": "guard", "stage": "input"}
    assert sample(prom, "taxgate_monitor_errors_total", kind="overload", **labels) == 1
    for reason in ("predicted", "late"):
        assert sample(prom, "taxgate_monitor_skipped_total", reason=reason, **labels) == 0
    assert (await first).decisions[0].action == "pass"


async def test_fail_open_never_monitor_waits_past_the_budget(budgeted, prom):
    pipeline, slow = await budgeted({"id": "judge", "on_error": "open"})
    await pipeline.check("input", ["learn"], request_id="r0")
    first = asyncio.create_task(pipeline.check("input", ["a"], request_id="r1"))
    await wait_until(lambda: slow.calls == 2, what="r1's check in flight")
    result = await pipeline.check("input", ["x"], request_id="r2")
    assert result.blocked and not result.skipped
    await first


async def test_a_cancelled_request_cancels_its_budgeted_check(budgeted, prom):
    pipeline, slow = await budgeted({"id": "judge", "degrade": "skip", "on_error": "open"})
    task = asyncio.create_task(pipeline.check("input", ["x"], request_id="r1"))
    await wait_until(lambda: slow.calls == 1, what="the check in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: slow.cancelled == 1, what="the monitor's check cancelled")
    labels = {"monitor": "judge", "stage": "input"}
    assert not sample(prom, "taxgate_monitor_verdicts_total", action="shadow", **labels)
    assert sample(prom, "taxgate_monitor_skipped_total", reason="late", **labels) == 0
