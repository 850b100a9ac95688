"""Per-request state: identity, labels, phase timings, and the Server-Timing header."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.tracing.tracer import RequestTrace


@dataclass(slots=True)
class RequestContext:
    request_id: str
    route: str
    started: float
    model: str = "unknown"
    status: int = 200
    flags: list[str] = field(default_factory=list)  # monitors that annotated (x-taxgate-flags)
    redacted: list[str] = field(default_factory=list)  # monitors that redacted (x-taxgate-redacted)
    # Seconds spent per gateway phase (parse, input_monitors, output_monitors, holdback).
    phases: dict[str, float] = field(default_factory=dict)
    upstream_sent: float | None = None
    upstream_first: float | None = None
    upstream_last: float | None = None
    first_sent: float | None = None
    last_sent: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The stream's last event went out: a client closing from now on has read it all.
    delivered: bool = False
    # The choices' finish reasons, where the gateway reads them (whole answers, blocks).
    finish_reasons: tuple[str, ...] = ()
    # Its spans when tracing is on (gateway.tracing), else None: nothing to do per chunk.
    trace: RequestTrace | None = None

    def note(self, result) -> None:
        """Remember which monitors of a stage result annotated and which redacted: the client
        is told both (a redacted input never shows in the answer otherwise)."""
        for decision in result.decisions:
            ids = {"annotate": self.flags, "redact": self.redacted}.get(decision.action)
            if ids is not None and decision.monitor_id not in ids:
                ids.append(decision.monitor_id)

    def verdict_headers(self) -> dict[str, str]:
        """``x-taxgate-flags`` / ``x-taxgate-redacted`` for what is known when headers leave."""
        return {
            name: ",".join(ids)
            for name, ids in (("x-taxgate-flags", self.flags), ("x-taxgate-redacted", self.redacted))
            if ids
        }

    def verdict_fields(self) -> dict[str, list[str]]:
        """The same on a stream's final event (``taxgate_flags``, ``taxgate_redacted``): the
        headers left before the output was checked."""
        return {
            name: list(ids) for name, ids in (("taxgate_flags", self.flags), ("taxgate_redacted", self.redacted)) if ids
        }

    def add_phase(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def monitor_context(self) -> dict[str, str]:
        """What each monitor verdict of this request carries to the audit log and traces."""
        context = {"route": self.route, "model": self.model}
        if self.trace is not None:
            context.update(self.trace.ids)
        return context

    def server_timing(self, now: float) -> str:
        """W3C Server-Timing: each gateway phase, the upstream, and the total (ms)."""
        parts = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.phases.items()]
        if self.upstream_sent is not None and self.upstream_last is not None:
            parts.append(f"upstream;dur={(self.upstream_last - self.upstream_sent) * 1000:.3f}")
        parts.append(f"total;dur={(now - self.started) * 1000:.3f}")
        return ", ".join(parts)
