"""What a stream must hold for a stage's monitors (monitors/stream_holds.py), asked through
the object a stream's policy is handed (``MonitorPipeline.stage``)."""

from __future__ import annotations

import pytest

from monitors.base import Finding, Monitor
from monitors.config import MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry


class Holding(Monitor):
    """Holds from a fixed place; reaches back ``reach`` characters for its context."""

    def __init__(self, at: int, reach: int = 0, group: int = 0) -> None:
        self.at, self.reach, self.group = at, reach, group

    @property
    def inline(self) -> bool:
        return True

    @property
    def context_chars(self) -> int:
        return self.reach

    @property
    def min_new_chars(self) -> int:
        return self.group

    def hold(self, text: str, start: int = 0) -> int:
        if self.at < 0:
            raise RuntimeError("broken hold")
        return self.at

    def check(self, texts):
        return [Finding(1.0 if "bad" in text else 0.0) for text in texts]


@pytest.fixture
async def make(metrics):
    registry = MonitorRegistry()
    registry.register(
        "holding",
        lambda spec: Holding(spec.options["at"], spec.options.get("reach", 0), spec.options.get("group", 0)),
    )
    made = []

    async def build(*specs) -> MonitorPipeline:
        pipeline = MonitorPipeline(
            [MonitorSpec.model_validate({"name": "holding", "stages": ["output"], **s}) for s in specs],
            metrics=metrics,
            registry=registry,
        )
        await pipeline.start()
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        await pipeline.close()


TEXT = "one two three four"


async def test_the_earliest_hold_of_the_enforcing_monitors_reading_the_kind(make):
    pipeline = await make(
        {"id": "a", "at": 12},
        {"id": "b", "at": 8},
        {"id": "c", "at": 2, "action": "shadow"},  # watches only: never holds
        {"id": "d", "at": 1, "fields": ["reasoning"]},
    )
    stage = pipeline.stage("output", request_id="r")
    assert stage.hold(TEXT, 0, "content") == 8
    assert stage.hold(TEXT, 0, "reasoning") == 1
    assert stage.hold(TEXT, 10, "content") == 10  # never before what was released


async def test_the_stream_hold_rules(make):
    stage = lambda pipeline: pipeline.stage("output", request_id="r")  # noqa: E731
    word = await make({"at": 0, "stream_hold": "word"})
    assert stage(word).hold(TEXT, 0) == len("one two three ")
    sentence = await make({"at": 0, "stream_hold": "sentence"})
    assert stage(sentence).hold("Done. And then", 0) == len("Done. ")
    chars = await make({"at": 0, "stream_hold": "chars", "stream_hold_chars": 5})
    assert stage(chars).hold(TEXT, 3) == 3 + 15


async def test_a_hold_that_raises_holds_everything_and_is_counted(make, prom, caplog):
    pipeline = await make({"id": "broken", "at": -1})
    assert pipeline.stage("output", request_id="r").hold(TEXT, 4) == 4
    assert (
        prom.get_sample_value("taxgate_monitor_errors_total", {"monitor": "broken", "stage": "output", "kind": "error"})
        == 1
    )
    assert "broken" in caplog.text and "RuntimeError" in caplog.text


async def test_context_reaches_as_far_as_the_widest_enforcing_monitor(make):
    pipeline = await make(
        {"id": "a", "at": 0, "reach": 40},
        {"id": "b", "at": 0, "reach": 90},
        {"id": "c", "at": 0, "reach": 500, "action": "shadow"},
    )
    assert pipeline.stage("output", request_id="r").context_chars == 90
    assert pipeline.stage("input", request_id="r").context_chars == 0


async def test_a_field_is_planned_from_the_fewest_new_chars_any_enforcing_monitor_needs(make):
    stage = lambda pipeline: pipeline.stage("output", request_id="r")  # noqa: E731
    grouped = await make(
        {"id": "a", "at": 0, "group": 48},
        {"id": "b", "at": 0, "group": 24},
        {"id": "c", "at": 0, "group": 8, "action": "shadow"},  # never holds: no say
    )
    assert stage(grouped).min_new_chars == 24
    # A word or sentence hold may release after any token; a chars block needs its size.
    assert (
        stage(await make({"id": "g", "at": 0, "group": 24}, {"id": "w", "at": 0, "stream_hold": "word"})).min_new_chars
        == 0
    )
    assert (
        stage(
            await make(
                {"id": "g", "at": 0, "group": 24}, {"id": "c", "at": 0, "stream_hold": "chars", "stream_hold_chars": 10}
            )
        ).min_new_chars
        == 10
    )
    assert grouped.stage("input", request_id="r").min_new_chars == 0  # no monitor there


async def test_the_bound_stage_checks_for_its_request(make):
    pipeline = await make({"id": "a", "at": 0})
    result = await pipeline.stage("output", request_id="r", context={"route": "chat"}).check(["fine", "bad"])
    assert result.blocked_by is not None and result.blocked_by.text_index == 1
    assert result.blocked_by.context == {"route": "chat"}
