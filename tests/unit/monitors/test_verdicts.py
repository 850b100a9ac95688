"""The verdict rules alone (monitors/verdicts.py): pure functions, no pipeline, no asyncio."""

from __future__ import annotations

from monitors.base import Finding, MonitorOverloaded, Span
from monitors.config import MonitorSpec
from monitors.verdicts import StageResult, failure, fold, late, renumber, verdict, watched


def spec(**options) -> MonitorSpec:
    return MonitorSpec.model_validate({"name": "m", **options})


def test_watched_texts_follow_the_fields_option():
    assert watched(spec(), None, 3) == (0, 1, 2)
    assert watched(spec(fields=["content"]), ["content", "reasoning", "content"], 3) == (0, 2)
    assert watched(spec(fields=["logprobs"]), ["content"], 1) == ()


def test_a_hit_takes_the_configured_action_on_the_first_text_that_hit():
    findings = [Finding(0.1), Finding(0.9, spans=[Span(3, 6, "X")]), Finding(0.95)]
    outcome = verdict(spec(action="redact", threshold=0.5), "output", ["aaa", "my bob", "ccc"], findings, 0.01)
    decision = outcome.decision
    assert (decision.action, decision.hit, decision.text_index, decision.score) == ("redact", True, 1, 0.9)
    assert "bob" not in decision.excerpt  # masked, never the flagged characters
    # A finding without spans flags its whole text, labelled with its top label or the monitor.
    assert outcome.spans == {1: [Span(3, 6, "X")], 2: [Span(0, 3, "m")]}


def test_a_block_keeps_no_spans_and_a_pass_keeps_the_highest_labels():
    blocked = verdict(spec(action="block"), "input", ["x"], [Finding(0.9)], 0.0)
    assert blocked.decision.action == "block" and blocked.spans == {}
    passed = verdict(
        spec(action="block"),
        "input",
        ["x", "y"],
        [Finding(0.1, labels={"a": 0.2}), Finding(0.3, labels={"a": 0.1, "b": 0.4})],
        0.0,
    )
    assert passed.decision.action == "pass" and passed.decision.score == 0.3
    assert passed.decision.labels == {"a": 0.2, "b": 0.4}


def test_label_thresholds_hit_below_the_score_threshold():
    outcome = verdict(
        spec(action="annotate", threshold=0.9, label_thresholds={"threat": 0.3}),
        "output",
        ["x"],
        [Finding(0.4, labels={"threat": 0.35})],
        0.0,
    )
    assert outcome.decision.hit and outcome.decision.action == "annotate"


def test_a_failure_blocks_only_when_closed_and_counts_open_ones():
    overloaded = MonitorOverloaded("m", 1.0)
    closed = failure(spec(on_error="closed"), "output", "overload", 0.2, overloaded)
    assert closed.decision.action == "block" and not closed.decision.failed_open
    assert closed.overloaded is overloaded
    opened = failure(spec(on_error="open"), "output", "timeout", 0.2, overloaded)
    assert opened.decision.action == "pass" and opened.decision.failed_open and opened.overloaded is None
    shadow = failure(spec(action="shadow", on_error="closed"), "output", "error", 0.0, None)
    assert shadow.decision.action == "pass" and not shadow.decision.failed_open


def test_renumber_maps_back_to_the_callers_texts():
    outcome = verdict(spec(action="redact"), "output", ["a", "bb"], [Finding(0.0), Finding(1.0)], 0.0)
    renumber(outcome, (2, 5))
    assert outcome.decision.text_index == 5 and set(outcome.spans) == {5}


def test_a_late_verdict_enforces_nothing():
    hit = verdict(spec(action="block"), "output", ["x"], [Finding(1.0)], 0.0).decision
    assert late(hit).action == "shadow"
    error = failure(spec(on_error="closed"), "output", "timeout", 0.0, None).decision
    assert late(error).action == "pass" and not error.failed_open


def test_fold_keeps_the_first_block_and_its_overload_and_merges_the_rest():
    result = StageResult(None, [[], []], [], [], 0.0)
    redact = verdict(
        spec(id="r", action="redact"),
        "output",
        ["ab", "cd"],
        [Finding(1.0, spans=[Span(0, 1, "X")]), Finding(0.0)],
        0.0,
    )
    annotate = verdict(spec(id="a", action="annotate"), "output", ["ab"], [Finding(1.0)], 0.0)
    first = failure(spec(id="b1", on_error="closed"), "output", "overload", 0.0, MonitorOverloaded("b1", 1.0))
    second = failure(spec(id="b2", on_error="closed"), "output", "overload", 0.0, MonitorOverloaded("b2", 1.0))
    assert fold(result, redact) is None and fold(result, annotate) is None
    assert fold(result, first) is first.overloaded
    assert fold(result, second) is None  # not the first block: nothing more to raise
    assert result.blocked_by is first.decision
    assert result.redactions == [[Span(0, 1, "X")], []] and result.annotations == [annotate.decision]
    assert [d.monitor_id for d in result.decisions] == ["r", "a", "b1", "b2"]
