"""One monitor's checks at one stage of one request, folded into what its span says.

A streamed answer is checked again and again as it grows (holdback checks nearly every
token), so a span per check would make hundreds of spans per stream. Instead every
(monitor, stage) of a request gets one tally and, at the request's end, one span: from the
first check's start to the last one's end, with counters (checks, hits, errors, skipped,
late, busy time, highest score, the strongest action taken) and an event per verdict that
did something (a hit, an error, a skip), up to ``MAX_EVENTS``. A request's input check is
the same with ``checks == 1``. Pure: the caller gives the times (unix ns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

# Strongest first: the span's action is the strongest any of its checks took.
ACTION_RANK = {"block": 5, "redact": 4, "annotate": 3, "shadow": 2, "pass": 1}
MAX_EVENTS = 16
PREFIX = "taxgate.monitor."


class Verdict(Protocol):
    """What the tally reads of a pipeline ``Decision``."""

    monitor_id: str
    monitor_name: str
    stage: str
    action: str
    hit: bool
    score: float
    error: str | None
    duration_s: float


@dataclass(slots=True)
class Event:
    name: str
    at_ns: int
    attributes: dict[str, Any]


@dataclass(slots=True)
class MonitorTally:
    monitor_id: str
    stage: str
    monitor_name: str = ""
    start_ns: int = 0
    end_ns: int = 0
    checks: int = 0
    hits: int = 0
    errors: int = 0
    skipped: int = 0
    late: int = 0
    busy_s: float = 0.0
    score: float = -math.inf
    action: str = ""
    error: str | None = None
    events: list[Event] = field(default_factory=list)
    events_dropped: int = 0

    def verdict(self, verdict: Verdict, end_ns: int) -> None:
        """A check that ended at ``end_ns`` (it began ``duration_s`` before)."""
        self.monitor_name = verdict.monitor_name
        self._span(end_ns - int(verdict.duration_s * 1e9), end_ns)
        self.checks += 1
        self.busy_s += verdict.duration_s
        if not math.isnan(verdict.score):
            self.score = max(self.score, verdict.score)
        if ACTION_RANK.get(verdict.action, 0) > ACTION_RANK.get(self.action, 0):
            self.action = verdict.action
        if verdict.hit:
            self.hits += 1
        if verdict.error is not None:
            self.errors += 1
            self.error = verdict.error
        if verdict.hit or verdict.error is not None:
            self._event(
                "verdict",
                end_ns,
                {
                    "action": verdict.action,
                    "score": verdict.score,
                    **({"error": verdict.error} if verdict.error else {}),
                },
            )

    def skip(self, reason: str, at_ns: int) -> None:
        """A check that gave way to the stage budget: ``predicted`` (never queued) or
        ``late`` (let go of; its verdict, if it comes, is recorded as a shadow one)."""
        self._span(at_ns, at_ns)
        if reason == "late":
            self.late += 1
        else:
            self.skipped += 1
        self._event("skipped", at_ns, {"reason": reason})

    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            PREFIX + "id": self.monitor_id,
            PREFIX + "name": self.monitor_name or self.monitor_id,
            PREFIX + "stage": self.stage,
            PREFIX + "action": self.action or "none",
            PREFIX + "checks": self.checks,
            PREFIX + "hits": self.hits,
            PREFIX + "errors": self.errors,
            PREFIX + "skipped": self.skipped,
            PREFIX + "late": self.late,
            PREFIX + "busy_s": self.busy_s,
        }
        if self.score != -math.inf:
            attributes[PREFIX + "score"] = self.score
        if self.error is not None:
            attributes[PREFIX + "error"] = self.error
        if self.events_dropped:
            attributes[PREFIX + "events_dropped"] = self.events_dropped
        return attributes

    def _span(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns if not self.start_ns else min(self.start_ns, start_ns)
        self.end_ns = max(self.end_ns, end_ns)

    def _event(self, name: str, at_ns: int, attributes: dict[str, Any]) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(Event(name, at_ns, attributes))
        else:
            self.events_dropped += 1


class Tallies:
    """The tallies of one request, by (monitor id, stage), in the order first seen."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], MonitorTally] = {}

    def of(self, monitor_id: str, stage: str) -> MonitorTally:
        key = (monitor_id, stage)
        tally = self._by_key.get(key)
        if tally is None:
            tally = self._by_key[key] = MonitorTally(monitor_id, stage)
        return tally

    def __iter__(self):
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)
