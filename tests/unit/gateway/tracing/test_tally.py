"""A stream's monitor checks folded into one span's worth of counters and events."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.tracing.tally import MAX_EVENTS, MonitorTally, Tallies

MS = 1_000_000


@dataclass
class V:
    action: str = "pass"
    hit: bool = False
    score: float = 0.1
    error: str | None = None
    duration_s: float = 0.002
    monitor_id: str = "pii"
    monitor_name: str = "pii"
    stage: str = "output"


def test_five_hundred_checks_make_one_tally_from_first_start_to_last_end():
    tally = MonitorTally("pii", "output")
    for n in range(500):
        tally.verdict(V(score=n / 1000), end_ns=1_000 * MS + n * 10 * MS)
    assert tally.checks == 500 and tally.hits == 0 and tally.events == []
    assert tally.start_ns == 1_000 * MS - 2 * MS  # the first check began duration_s before
    assert tally.end_ns == 1_000 * MS + 499 * 10 * MS
    assert math.isclose(tally.busy_s, 1.0)
    attributes = tally.attributes()
    assert attributes["taxgate.monitor.checks"] == 500
    assert attributes["taxgate.monitor.score"] == 0.499
    assert attributes["taxgate.monitor.action"] == "pass"
    assert "taxgate.monitor.error" not in attributes


def test_the_strongest_action_and_an_event_per_verdict_that_did_something():
    tally = MonitorTally("pii", "output")
    tally.verdict(V(action="redact", hit=True, score=0.9), end_ns=10 * MS)
    tally.verdict(V(), end_ns=20 * MS)
    tally.verdict(V(action="pass", error="timeout", score=0.0), end_ns=30 * MS)
    tally.verdict(V(action="annotate", hit=True, score=0.5), end_ns=40 * MS)
    attributes = tally.attributes()
    assert (
        attributes["taxgate.monitor.action"],
        attributes["taxgate.monitor.hits"],
        attributes["taxgate.monitor.errors"],
        attributes["taxgate.monitor.error"],
    ) == ("redact", 2, 1, "timeout")
    assert [(e.name, e.at_ns, e.attributes["action"]) for e in tally.events] == [
        ("verdict", 10 * MS, "redact"),
        ("verdict", 30 * MS, "pass"),
        ("verdict", 40 * MS, "annotate"),
    ]
    assert tally.events[1].attributes["error"] == "timeout"


def test_events_are_capped_and_the_rest_counted():
    tally = MonitorTally("blocklist", "output")
    for n in range(MAX_EVENTS + 5):
        tally.verdict(V(action="annotate", hit=True), end_ns=(n + 1) * MS)
    assert len(tally.events) == MAX_EVENTS
    assert tally.attributes()["taxgate.monitor.events_dropped"] == 5
    assert tally.hits == MAX_EVENTS + 5


def test_skips_count_by_reason_and_stretch_the_span():
    tally = MonitorTally("judge", "input")
    tally.skip("predicted", 5 * MS)
    tally.skip("late", 9 * MS)
    attributes = tally.attributes()
    assert (
        attributes["taxgate.monitor.skipped"],
        attributes["taxgate.monitor.late"],
        attributes["taxgate.monitor.checks"],
        attributes["taxgate.monitor.action"],
    ) == (1, 1, 0, "none")
    assert "taxgate.monitor.score" not in attributes  # no verdict, no score
    assert (tally.start_ns, tally.end_ns) == (5 * MS, 9 * MS)
    assert [e.attributes["reason"] for e in tally.events] == ["predicted", "late"]


def test_a_nan_score_does_not_poison_the_highest():
    tally = MonitorTally("pii", "input")
    tally.verdict(V(score=math.nan), end_ns=MS * 3)
    tally.verdict(V(score=0.3), end_ns=MS * 4)
    assert tally.attributes()["taxgate.monitor.score"] == 0.3


def test_tallies_one_per_monitor_and_stage_in_first_seen_order():
    tallies = Tallies()
    tallies.of("pii", "input").verdict(V(stage="input"), end_ns=MS * 3)
    tallies.of("pii", "output").verdict(V(), end_ns=MS * 3)
    tallies.of("pii", "output").verdict(V(), end_ns=MS * 4)
    tallies.of("profanity", "output").verdict(V(monitor_id="profanity"), end_ns=MS * 4)
    assert [(t.monitor_id, t.stage, t.checks) for t in tallies] == [
        ("pii", "input", 1),
        ("pii", "output", 2),
        ("profanity", "output", 1),
    ]
    assert len(tallies) == 3
