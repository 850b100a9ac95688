from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from monitors.base import AsyncMonitor, Finding, Monitor, MonitorLoadError, MonitorOverloaded, Span
from monitors.config import MonitorSpec
from monitors.pipeline import Decision, MonitorPipeline
from monitors.redact import apply_redactions
from monitors.registry import MonitorRegistry
from tests.waiting import started, wait_until


class Keyword(Monitor):
    """Sync: flags the word given in its options, with spans."""

    def __init__(self, word: str) -> None:
        self.regex = re.compile(re.escape(word))

    def check(self, texts):
        findings = []
        for text in texts:
            spans = tuple(Span(m.start(), m.end(), "word") for m in self.regex.finditer(text))
            score = 0.9 if spans else 0.1
            findings.append(Finding(score=score, labels={"word": score, "other": 0.2}, spans=spans))
        return findings


class Classifier(AsyncMonitor):
    """Async, whole-text: scores the share of 'x' characters; sleeps `delay` first."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.closed = False

    async def check(self, texts):
        await asyncio.sleep(self.delay)
        return [
            Finding(score=t.count("x") / max(1, len(t)), labels={"xness": t.count("x") / max(1, len(t))}) for t in texts
        ]

    async def close(self):
        self.closed = True


class Raising(Monitor):
    def check(self, texts):
        raise RuntimeError("secret text must not be logged: " + texts[0])


class Hanging(AsyncMonitor):
    async def check(self, texts):
        await asyncio.Event().wait()


class Gated(AsyncMonitor):
    """Async; waits for the test to open the gate (a shadow that has not finished yet)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def check(self, texts):
        await self.gate.wait()
        return [Finding(score=1.0, labels={"gated": 1.0}) for _ in texts]


class Overloaded(AsyncMonitor):
    async def check(self, texts):
        raise MonitorOverloaded("inner-name", 2.5)


class Blocking(Monitor):
    """Sync; holds the batcher's thread until released, to fill its queue."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def check(self, texts):
        self.entered.set()
        self.release.wait(5)
        return [Finding(score=0.0) for _ in texts]


def fail_to_load(spec: MonitorSpec) -> Monitor:
    raise MonitorLoadError("weights missing")


@pytest.fixture
def registry():
    instances: dict[str, Monitor] = {}

    def keep(name, monitor):
        instances[name] = monitor
        return monitor

    reg = MonitorRegistry()
    reg.register("keyword", lambda spec: Keyword(spec.options.get("word", "bad")))
    reg.register("classifier", lambda spec: keep(spec.id, Classifier(spec.options.get("delay", 0.0))))
    reg.register("raising", lambda spec: Raising())
    reg.register("hanging", lambda spec: Hanging())
    reg.register("gated", lambda spec: keep(spec.id, Gated()))
    reg.register("overloaded", lambda spec: Overloaded())
    reg.register("blocking", lambda spec: keep(spec.id, Blocking()))
    reg.register("broken", fail_to_load)
    reg.instances = instances
    return reg


@pytest.fixture
async def make_pipeline(registry, metrics):
    made = []

    async def make(*specs, on_event=None) -> MonitorPipeline:
        pipeline = MonitorPipeline(
            [MonitorSpec(**s) for s in specs], metrics=metrics, registry=registry, on_event=on_event
        )
        await pipeline.start()
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        await pipeline.close()


def sample(prom: CollectorRegistry, name: str, **labels) -> float:
    return prom.get_sample_value(name, labels) or 0.0


def redacted(result, texts: list[str]) -> list[str]:
    """``texts`` masked as the gateway masks them: each with its own spans."""
    return [apply_redactions(text, spans) for text, spans in zip(texts, result.redactions, strict=True)]


async def test_block_hits_and_passes(make_pipeline, prom):
    pipeline = await make_pipeline({"name": "keyword", "action": "block"})
    passed = await pipeline.check("input", ["all good"], request_id="r")
    assert passed.blocked_by is None and not passed.redacted
    assert [d.action for d in passed.decisions] == ["pass"]
    blocked = await pipeline.check("input", ["fine", "so bad"], request_id="r")
    decision = blocked.blocked_by
    assert decision is not None
    assert (decision.monitor_id, decision.action, decision.hit, decision.text_index) == ("keyword", "block", True, 1)
    assert decision.score == 0.9 and decision.labels == {"word": 0.9, "other": 0.2}
    assert decision.excerpt == "so [REDACTED:WORD]"
    assert sample(prom, "taxgate_monitor_verdicts_total", monitor="keyword", stage="input", action="pass") == 1
    assert sample(prom, "taxgate_monitor_verdicts_total", monitor="keyword", stage="input", action="block") == 1
    assert sample(prom, "taxgate_monitor_duration_seconds_count", monitor="keyword", stage="input") == 2


async def test_first_blocking_monitor_in_config_order_wins(make_pipeline):
    pipeline = await make_pipeline(
        {"name": "classifier", "id": "slow", "delay": 0.05, "threshold": 0.1},
        {"name": "keyword", "id": "fast"},
    )
    result = await pipeline.check("input", ["xx bad"], request_id="r")
    assert result.blocked_by.monitor_id == "slow"
    assert [d.monitor_id for d in result.decisions] == ["slow", "fast"]


async def test_redact_collects_spans_per_text(make_pipeline):
    pipeline = await make_pipeline({"name": "keyword", "action": "redact"})
    texts = ["nothing", "bad and bad", "also bad"]
    result = await pipeline.check("output", texts, request_id="r")
    assert result.blocked_by is None and result.redacted
    assert [len(spans) for spans in result.redactions] == [0, 2, 1]
    assert redacted(result, texts) == ["nothing", "[REDACTED:WORD] and [REDACTED:WORD]", "also [REDACTED:WORD]"]


async def test_redact_without_spans_masks_the_whole_text_with_the_top_label(make_pipeline):
    pipeline = await make_pipeline({"name": "classifier", "action": "redact", "threshold": 0.5})
    texts = ["xxxx", "calm"]
    result = await pipeline.check("input", texts, request_id="r")
    assert redacted(result, texts) == ["[REDACTED:XNESS]", "calm"]
    assert result.decisions[0].excerpt == "[REDACTED:XNESS]"


async def test_annotate_records_without_changing_anything(make_pipeline):
    pipeline = await make_pipeline({"name": "keyword", "action": "annotate"})
    result = await pipeline.check("input", ["bad"], request_id="r")
    assert result.blocked_by is None and not result.redacted
    assert [d.monitor_id for d in result.annotations] == ["keyword"]


async def test_label_thresholds_hit_below_the_score_threshold(make_pipeline):
    pipeline = await make_pipeline({"name": "keyword", "threshold": 1.0, "label_thresholds": {"other": 0.2}})
    result = await pipeline.check("input", ["harmless"], request_id="r")
    assert result.blocked_by is not None and result.blocked_by.score == 0.1


async def test_monitors_run_concurrently(make_pipeline):
    pipeline = await make_pipeline(
        *({"name": "classifier", "id": f"c{i}", "delay": 0.2} for i in range(3)),
        {"name": "keyword"},
    )
    started = time.perf_counter()
    result = await pipeline.check("input", ["text"], request_id="r")
    assert time.perf_counter() - started < 0.45
    assert len(result.decisions) == 4
    assert result.elapsed_s >= 0.2


async def test_stages_are_respected(make_pipeline):
    pipeline = await make_pipeline(
        {"name": "keyword", "id": "in", "stages": ["input"]},
        {"name": "keyword", "id": "out-shadow", "stages": ["output"], "action": "shadow"},
    )
    assert pipeline.has_stage("input") and pipeline.enforces("input")
    assert pipeline.has_stage("output") and not pipeline.enforces("output")
    result = await pipeline.check("output", ["bad"], request_id="r")
    assert result.decisions == [] and result.blocked_by is None


async def test_same_monitor_twice_with_different_ids(make_pipeline, prom):
    pipeline = await make_pipeline(
        {"name": "keyword", "id": "strict", "word": "bad"},
        {"name": "keyword", "id": "lenient", "word": "worse", "action": "annotate"},
    )
    result = await pipeline.check("input", ["worse"], request_id="r")
    assert result.blocked_by is None
    assert [(d.monitor_id, d.monitor_name, d.action) for d in result.decisions] == [
        ("strict", "keyword", "pass"),
        ("lenient", "keyword", "annotate"),
    ]
    assert sample(prom, "taxgate_monitor_verdicts_total", monitor="lenient", stage="input", action="annotate") == 1


async def test_duplicate_ids_are_refused(registry, metrics):
    pipeline = MonitorPipeline(
        [MonitorSpec(name="keyword"), MonitorSpec(name="keyword")], metrics=metrics, registry=registry
    )
    with pytest.raises(MonitorLoadError, match="repeated: keyword"):
        await pipeline.start()


@pytest.mark.parametrize("on_error, blocked, fail_open", [("closed", True, 0), ("open", False, 1)])
async def test_a_raising_monitor_follows_on_error(make_pipeline, prom, caplog, on_error, blocked, fail_open):
    events = []
    pipeline = await make_pipeline(
        {"name": "raising", "on_error": on_error}, on_event=lambda d, rid: events.append((d, rid))
    )
    result = await pipeline.check("input", ["my password is hunter2"], request_id="req-7")
    [decision] = result.decisions
    assert decision.error == "error" and decision.failed_open == (not blocked)
    assert (result.blocked_by is decision) == blocked
    assert decision.action == ("block" if blocked else "pass")
    assert events == [(decision, "req-7")], "a failure is never silent"
    labels = {"monitor": "raising", "stage": "input"}
    assert sample(prom, "taxgate_monitor_errors_total", kind="error", **labels) == 1
    assert sample(prom, "taxgate_monitor_fail_open_total", **labels) == fail_open
    assert "raising" in caplog.text and "req-7" in caplog.text and "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("on_error, blocked", [("closed", True), ("open", False)])
async def test_a_hanging_monitor_times_out(make_pipeline, prom, on_error, blocked):
    pipeline = await make_pipeline({"name": "hanging", "timeout_ms": 50, "on_error": on_error}, {"name": "keyword"})
    started = time.perf_counter()
    result = await pipeline.check("input", ["fine"], request_id="r")
    assert time.perf_counter() - started < 0.5
    assert [d.error for d in result.decisions] == ["timeout", None]
    assert result.blocked == blocked
    assert sample(prom, "taxgate_monitor_errors_total", monitor="hanging", stage="input", kind="timeout") == 1


async def test_a_slow_sync_monitor_times_out_without_breaking_its_batcher(registry, make_pipeline):
    pipeline = await make_pipeline({"name": "blocking", "timeout_ms": 50, "on_error": "open"})
    blocking = registry.instances["blocking"]
    result = await pipeline.check("input", ["slow"], request_id="r")
    assert result.decisions[0].error == "timeout" and result.decisions[0].failed_open
    blocking.release.set()
    result = await pipeline.check("input", ["again"], request_id="r")
    assert result.decisions[0].error is None


async def test_overload_fail_closed_raises_for_a_503(make_pipeline, prom):
    pipeline = await make_pipeline({"name": "overloaded", "id": "guard"})
    with pytest.raises(MonitorOverloaded) as info:
        await pipeline.check("input", ["x"], request_id="r")
    assert (info.value.monitor_id, info.value.retry_after_s) == ("guard", 2.5)
    assert sample(prom, "taxgate_monitor_errors_total", monitor="guard", stage="input", kind="overload") == 1


async def test_overload_fail_open_passes_and_counts(make_pipeline, prom):
    pipeline = await make_pipeline({"name": "overloaded", "on_error": "open"})
    result = await pipeline.check("input", ["x"], request_id="r")
    assert result.blocked_by is None and result.decisions[0].error == "overload"
    assert sample(prom, "taxgate_monitor_fail_open_total", monitor="overloaded", stage="input") == 1


async def test_a_full_batcher_queue_is_an_overload(registry, make_pipeline):
    pipeline = await make_pipeline({"name": "blocking", "batch": {"max_queue": 1, "max_wait_ms": 0}})
    blocking = registry.instances["blocking"]
    (batcher,) = [entry.batcher for entry in pipeline._runners]
    first = asyncio.create_task(pipeline.check("input", ["one"], request_id="a"))
    await wait_until(blocking.entered.is_set, what="the first batch running")
    second = asyncio.create_task(pipeline.check("input", ["two"], request_id="b"))
    await wait_until(lambda: batcher.queued == 1, what="the second text queued")
    with pytest.raises(MonitorOverloaded) as info:
        await pipeline.check("input", ["three"], request_id="c")
    assert info.value.monitor_id == "blocking" and info.value.retry_after_s > 0
    blocking.release.set()
    assert (await first).blocked_by is None and (await second).blocked_by is None


async def test_a_content_block_earlier_in_order_beats_a_later_overload(make_pipeline):
    pipeline = await make_pipeline({"name": "keyword"}, {"name": "overloaded"})
    result = await pipeline.check("input", ["bad"], request_id="r")
    assert result.blocked_by.monitor_id == "keyword"


async def test_shadow_is_not_waited_on_but_recorded_when_done(registry, make_pipeline, prom):
    events = []
    pipeline = await make_pipeline(
        {"name": "gated", "action": "shadow"},
        {"name": "keyword"},
        on_event=lambda d, rid: events.append((d.monitor_id, d.action, rid)),
    )
    result = await asyncio.wait_for(pipeline.check("input", ["fine"], request_id="r9"), 1.0)
    assert [d.monitor_id for d in result.decisions] == ["keyword"]
    assert result.blocked_by is None
    assert events == []
    registry.instances["gated"].gate.set()
    await wait_until(lambda: events, what="the shadow verdict")
    assert events == [("gated", "shadow", "r9")]
    assert sample(prom, "taxgate_monitor_verdicts_total", monitor="gated", stage="input", action="shadow") == 1


async def test_close_waits_for_running_shadows(registry, metrics, prom):
    events: list[Decision] = []
    pipeline = MonitorPipeline(
        [MonitorSpec(name="gated", action="shadow")],
        metrics=metrics,
        registry=registry,
        on_event=lambda d, rid: events.append(d),
    )
    await pipeline.start()
    await pipeline.check("output", ["x"], request_id="r")
    recorded_when_closed: list[int] = []

    async def close() -> None:
        await pipeline.close()
        recorded_when_closed.append(len(events))

    closing = await started(close())  # close is now waiting, on the shadow or on nothing
    assert not closing.done()
    registry.instances["gated"].gate.set()
    await asyncio.wait_for(closing, 1.0)
    assert recorded_when_closed == [1] and events[0].hit


async def test_a_failing_shadow_never_blocks(make_pipeline, prom):
    pipeline = await make_pipeline({"name": "raising", "action": "shadow", "on_error": "closed"})
    result = await pipeline.check("input", ["x"], request_id="r")
    assert result.blocked_by is None
    await pipeline.close()
    assert sample(prom, "taxgate_monitor_errors_total", monitor="raising", stage="input", kind="error") == 1
    assert sample(prom, "taxgate_monitor_verdicts_total", monitor="raising", stage="input", action="pass") == 1
    assert sample(prom, "taxgate_monitor_fail_open_total", monitor="raising", stage="input") == 0


async def test_a_monitor_that_fails_to_load_is_named(registry, metrics):
    pipeline = MonitorPipeline(
        [MonitorSpec(name="classifier", id="ok"), MonitorSpec(name="broken", id="tox-model")],
        metrics=metrics,
        registry=registry,
    )
    with pytest.raises(MonitorLoadError, match=r"monitor 'tox-model': .*weights missing"):
        await pipeline.start()
    assert registry.instances["ok"].closed, "monitors built before the failure are closed"
    unknown = MonitorPipeline([MonitorSpec(name="nope")], metrics=metrics, registry=registry)
    with pytest.raises(MonitorLoadError, match="unknown monitor 'nope'; known monitors: blocking, broken"):
        await unknown.start()


async def test_close_awaits_async_close(registry, metrics):
    pipeline = MonitorPipeline([MonitorSpec(name="classifier")], metrics=metrics, registry=registry)
    await pipeline.start()
    await pipeline.close()
    assert registry.instances["classifier"].closed


async def test_a_failing_event_sink_is_logged_not_fatal(make_pipeline, caplog):
    def sink(decision, request_id):
        raise OSError("disk full")

    pipeline = await make_pipeline({"name": "keyword"}, on_event=sink)
    result = await pipeline.check("input", ["bad"], request_id="r")
    assert result.blocked_by is not None
    assert "audit event sink failed" in caplog.text


async def test_no_texts_no_work(make_pipeline):
    pipeline = await make_pipeline({"name": "keyword"})
    result = await pipeline.check("input", [], request_id="r")
    assert result.decisions == [] and result.redactions == []


async def test_check_before_start_is_an_error(registry, metrics):
    with pytest.raises(RuntimeError, match="before start"):
        await MonitorPipeline([], metrics=metrics, registry=registry).check("input", ["x"], request_id="r")


async def test_builtins_through_the_default_registry(metrics):
    pipeline = MonitorPipeline(
        [MonitorSpec(name="pii", action="redact"), MonitorSpec(name="blocklist", keywords=["zeus"])],
        metrics=metrics,
    )
    await pipeline.start()
    try:
        texts = ["mail me: a@b.io", "project zeus"]
        result = await pipeline.check("input", texts, request_id="r")
        assert result.blocked_by.monitor_id == "blocklist"
        assert redacted(result, texts)[0] == "mail me: [REDACTED:EMAIL]"
    finally:
        await pipeline.close()


async def test_inline_monitors_skip_the_batcher_and_still_count():
    from prometheus_client import CollectorRegistry

    from monitors.builtin.blocklist import create as blocklist
    from monitors.config import MonitorSpec
    from monitors.metrics import MonitorMetrics
    from monitors.pipeline import MonitorPipeline
    from monitors.registry import MonitorRegistry

    keywords = MonitorSpec(name="blocklist", id="words", keywords=["zap"])
    regexes = MonitorSpec(name="blocklist", id="regexes", patterns=[r"z[a]p"])
    assert blocklist(keywords).inline and not blocklist(regexes).inline
    prom = CollectorRegistry()
    pipeline = MonitorPipeline(
        [keywords, regexes], metrics=MonitorMetrics(prom), registry=MonitorRegistry.from_entry_points()
    )
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["a zap here"], request_id="r")
    finally:
        await pipeline.close()
    assert result.blocked_by is not None and result.blocked_by.monitor_id == "words"
    # Only the regex monitor went through a micro-batcher.
    assert prom.get_sample_value("taxgate_monitor_batch_size_count", {"monitor": "words"}) is None
    assert prom.get_sample_value("taxgate_monitor_batch_size_count", {"monitor": "regexes"}) == 1


async def test_a_long_inline_check_still_obeys_its_timeout():
    import time as time_module

    from prometheus_client import CollectorRegistry

    from monitors.base import Finding, Monitor
    from monitors.config import MonitorSpec
    from monitors.metrics import MonitorMetrics
    from monitors.pipeline import MonitorPipeline
    from monitors.registry import MonitorRegistry

    class SlowInline(Monitor):
        @property
        def inline(self) -> bool:
            return True

        def check(self, texts):
            time_module.sleep(0.5)  # stands for a regex that backtracks on a huge prompt
            return [Finding(score=0.0) for _ in texts]

    registry = MonitorRegistry()
    registry.register("slow", lambda spec: SlowInline())
    prom = CollectorRegistry()
    spec = MonitorSpec(name="slow", timeout_ms=50, on_error="closed")
    pipeline = MonitorPipeline([spec], metrics=MonitorMetrics(prom), registry=registry)
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["x" * (Monitor.inline_max_chars + 1)], request_id="r")
    finally:
        await pipeline.close()
    assert result.blocked_by is not None and result.blocked_by.error == "timeout"


async def test_the_callers_context_reaches_every_recorded_decision(registry, make_pipeline):
    events = []
    pipeline = await make_pipeline(
        {"name": "keyword"},
        {"name": "gated", "action": "shadow"},
        on_event=lambda d, rid: events.append((d.monitor_id, d.context)),
    )
    context = {"route": "chat", "model": "tiny"}
    await pipeline.check("input", ["bad"], request_id="r", context=context)
    registry.instances["gated"].gate.set()
    await wait_until(lambda: len(events) == 2, what="the shadow verdict")
    assert events == [("keyword", context), ("gated", context)]
    # Callers that say nothing get an empty context.
    await pipeline.check("input", ["bad"], request_id="r2")
    assert events[-1] == ("keyword", {})
