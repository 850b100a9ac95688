"""The audit event: one monitor verdict as it is stored, and its columns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from monitors.pipeline import Decision

COLUMNS = (
    "request_id",
    "ts",
    "stage",
    "monitor",
    "action",
    "hit",
    "score",
    "labels",
    "error",
    "excerpt",
    "route",
    "model",
    "replica",
    "trace_id",
    "span_id",
)
GROUPS = ("monitor", "stage", "action", "replica")
Group = Literal["monitor", "stage", "action", "replica"]
# What an event's ``action`` says was done; see ``AuditEvent``.
ACTIONS = ("block", "redact", "annotate", "shadow", "error")
STAGES = ("input", "output")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One monitor verdict. ``excerpt`` must already be masked by the caller.

    ``route`` is the gateway route (``chat`` / ``completions``), ``model`` the requested
    model, ``replica`` the gateway replica that wrote it (``audit.replica``, default the
    host name, which is the pod name on Kubernetes). ``trace_id`` and ``span_id`` (hex) name
    the request's OpenTelemetry trace and its gateway span when tracing is on, else ``""``.

    ``action`` is what the gateway did because of this verdict: ``block``, ``redact`` or
    ``annotate`` on a hit (the monitor's configured action), ``shadow`` on a hit that was
    recorded and not enforced (a shadow monitor, or a check that finished after its request
    moved on), and ``error`` when the monitor failed (``error`` says how) and its text went
    through unchecked by it (``on_error: open``, a shadow or late check). A failed
    ``on_error: closed`` monitor blocked the request: ``block``, with ``error`` set.
    """

    request_id: str
    ts: float  # unix time, seconds
    stage: str
    monitor: str  # the configured monitor id
    action: str  # what was done: one of ACTIONS
    hit: bool
    score: float
    labels: dict[str, float]
    error: str | None
    excerpt: str
    route: str = ""
    model: str = ""
    replica: str = ""
    trace_id: str = ""
    span_id: str = ""


def recorded_action(action: str, error: str | None) -> str:
    """The event's ``action`` for a verdict whose pipeline ``action`` is ``action``.

    The pipeline says ``pass`` for a failed monitor that let the text through; in the audit
    log (which holds no clean passes) that reads as ``error``, so an operator can find
    every fail-open with one filter.
    """
    return "error" if error is not None and action == "pass" else action


def event_from_decision(decision: Decision, request_id: str, *, ts: float, replica: str) -> AuditEvent:
    """The audit event for one monitor verdict of the pipeline."""
    return AuditEvent(
        request_id=request_id,
        ts=ts,
        stage=decision.stage,
        monitor=decision.monitor_id,
        action=recorded_action(decision.action, decision.error),
        hit=decision.hit,
        score=decision.score,
        labels=dict(decision.labels),
        error=decision.error,
        excerpt=decision.excerpt,
        route=decision.context.get("route", ""),
        model=decision.context.get("model", ""),
        replica=replica,
        trace_id=decision.context.get("trace_id", ""),
        span_id=decision.context.get("span_id", ""),
    )


def event_from_row(values: Mapping[str, object]) -> AuditEvent:
    """An event from its columns, already in Python types (the backend decodes ts, labels)."""
    score = values["score"]
    return AuditEvent(
        **{
            **{column: values[column] for column in COLUMNS},
            "hit": bool(values["hit"]),
            "score": math.nan if score is None else score,  # SQLite stores NaN as NULL
        }
    )
