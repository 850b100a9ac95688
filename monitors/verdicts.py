"""Verdict rules: one monitor's findings (or its failure) turned into a Decision, and a
stage's decisions folded into one StageResult. Pure: no asyncio, no clock, no metrics.

These are the result types the gateway reads: ``Decision`` (one monitor's verdict, what
the audit log records) and ``StageResult`` (what a stage decided: a block, the spans to
redact per text, the annotations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from monitors.base import Finding, MonitorOverloaded, Span
from monitors.config import MonitorSpec
from monitors.redact import excerpt

__all__ = [
    "NO_CONTEXT",
    "Decision",
    "Outcome",
    "StageResult",
    "failure",
    "fold",
    "is_hit",
    "late",
    "renumber",
    "verdict",
    "watched",
]

NO_CONTEXT: Mapping[str, str] = MappingProxyType({})


@dataclass
class Decision:
    """One monitor's verdict on one stage check.

    ``action`` is what was done: the configured action on a hit, ``pass`` otherwise;
    a failed monitor set ``on_error: closed`` reports ``block``. ``error`` is None,
    ``error``, ``timeout`` or ``overload``. ``text_index`` is the first text that hit
    and ``excerpt`` a masked excerpt of it (never the raw flagged characters).
    ``context`` is what the caller of ``check`` said about the request (the gateway:
    ``route`` and ``model``), passed through untouched for the event sink.
    """

    monitor_id: str
    monitor_name: str
    stage: str
    action: str
    hit: bool
    score: float
    labels: dict[str, float]
    error: str | None
    failed_open: bool
    text_index: int | None
    excerpt: str
    duration_s: float
    context: Mapping[str, str] = field(default_factory=lambda: NO_CONTEXT)


@dataclass
class StageResult:
    """What a stage decided. ``redactions[i]`` holds the spans to mask in text ``i``."""

    blocked_by: Decision | None
    redactions: list[list[Span]]
    annotations: list[Decision]
    decisions: list[Decision]
    elapsed_s: float
    # Ids of degrade: skip monitors that gave way to the stage budget on this check.
    skipped: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.blocked_by is not None

    @property
    def redacted(self) -> bool:
        return any(self.redactions)


@dataclass
class Outcome:
    """One monitor's check: its decision, the spans it asks to redact per text, and the
    overload to raise when it is the stage's first block."""

    decision: Decision
    spans: dict[int, list[Span]] = field(default_factory=dict)
    overloaded: MonitorOverloaded | None = None


def watched(spec: MonitorSpec, kinds: Sequence[str] | None, count: int) -> tuple[int, ...]:
    """Indices of the texts this monitor looks at."""
    if kinds is None or spec.fields is None:
        return tuple(range(count))
    return tuple(i for i, kind in enumerate(kinds) if kind in spec.fields)


def is_hit(spec: MonitorSpec, finding: Finding) -> bool:
    if finding.score >= spec.threshold:
        return True
    return any(finding.labels.get(label, 0.0) >= limit for label, limit in spec.label_thresholds.items())


def _top_label(finding: Finding, fallback: str) -> str:
    if not finding.labels:
        return fallback
    return max(finding.labels.items(), key=lambda item: item[1])[0]


def _spans_or_whole(finding: Finding, text: str, fallback_label: str) -> list[Span]:
    # A monitor that scores whole texts (a classifier) flags all of it.
    if finding.spans:
        return list(finding.spans)
    return [Span(0, len(text), _top_label(finding, fallback_label))]


def failure(
    spec: MonitorSpec, stage: str, error: str, duration: float, overloaded: MonitorOverloaded | None
) -> Outcome:
    """A monitor that failed (``error``, ``timeout``, ``overload``): a block when it is
    set ``on_error: closed``, else a counted fail-open pass (shadows enforce nothing)."""
    shadow = spec.action == "shadow"
    closed = spec.on_error == "closed" and not shadow
    decision = Decision(
        monitor_id=spec.id,
        monitor_name=spec.name,
        stage=stage,
        action="block" if closed else "pass",
        hit=False,
        score=0.0,
        labels={},
        error=error,
        failed_open=not closed and not shadow,
        text_index=None,
        excerpt="",
        duration_s=duration,
    )
    return Outcome(decision, overloaded=overloaded if closed else None)


def verdict(
    spec: MonitorSpec, stage: str, texts: Sequence[str], findings: Sequence[Finding], duration: float
) -> Outcome:
    """A monitor's findings on ``texts``: its action on the first text that hit, else pass."""
    hits = [i for i, finding in enumerate(findings) if is_hit(spec, finding)]
    if not hits:
        labels: dict[str, float] = {}
        for finding in findings:
            for label, value in finding.labels.items():
                labels[label] = max(float(value), labels.get(label, 0.0))
        decision = Decision(
            monitor_id=spec.id,
            monitor_name=spec.name,
            stage=stage,
            action="pass",
            hit=False,
            score=max(float(f.score) for f in findings),
            labels=labels,
            error=None,
            failed_open=False,
            text_index=None,
            excerpt="",
            duration_s=duration,
        )
        return Outcome(decision)
    first = hits[0]
    finding = findings[first]
    spans = {i: _spans_or_whole(findings[i], texts[i], spec.name) for i in hits}
    decision = Decision(
        monitor_id=spec.id,
        monitor_name=spec.name,
        stage=stage,
        action=spec.action,
        hit=True,
        score=float(finding.score),
        labels={k: float(v) for k, v in finding.labels.items()},
        error=None,
        failed_open=False,
        text_index=first,
        excerpt=excerpt(texts[first], spans[first]),
        duration_s=duration,
    )
    return Outcome(decision, spans=spans if spec.action == "redact" else {})


def renumber(outcome: Outcome, watched: tuple[int, ...]) -> Outcome:
    """An outcome on the watched texts only, back in the caller's numbering of the texts."""
    outcome.spans = {watched[i]: spans for i, spans in outcome.spans.items()}
    if outcome.decision.text_index is not None:
        outcome.decision.text_index = watched[outcome.decision.text_index]
    return outcome


def late(decision: Decision) -> Decision:
    """A check that finished after the request moved on enforces nothing: its action
    reads ``shadow`` on a hit, ``pass`` otherwise (a fail-closed error blocked nothing);
    it was counted as skipped (late), not as a fail-open pass."""
    if decision.hit:
        decision.action = "shadow"
    elif decision.action == "block":
        decision.action = "pass"
    decision.failed_open = False
    return decision


def fold(result: StageResult, outcome: Outcome) -> MonitorOverloaded | None:
    """Add one enforcing monitor's outcome to the stage's result; the overload to raise
    when this outcome is the stage's first block."""
    decision = outcome.decision
    result.decisions.append(decision)
    if decision.action == "block":
        if result.blocked_by is None:
            result.blocked_by = decision
            return outcome.overloaded
    elif decision.action == "redact":
        for index, spans in outcome.spans.items():
            result.redactions[index].extend(spans)
    elif decision.action == "annotate":
        result.annotations.append(decision)
    return None
