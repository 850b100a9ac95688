"""Runs a stage's monitors on texts and turns their scores into one decision.

The monitors of a stage run concurrently, each under its own timeout. A monitor
that fails is never ignored: it blocks when configured ``on_error: closed`` and is
counted as a fail-open pass when ``open``. Shadow monitors run off the critical
path; their verdicts are recorded when they finish.

Under a stage budget (``budgets``, see monitors/admission.py) a ``degrade: skip``
monitor whose predicted wait does not fit what is left of the budget is not queued
(skipped, counted), and one that runs past it is let go of: the request moves on and
the verdict, when it comes, is recorded like a shadow one. A fail-closed monitor is
never skipped: predicted over budget, it sheds the request (MonitorOverloaded: 503).

Metrics are labelled with the monitor's *id* (the same monitor name may be
configured twice, e.g. with different thresholds per stage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from monitors.admission import (
    Deadline,
    ServiceEstimate,
    admits,
    batch_wait,
    retry_after,
)
from monitors.base import AsyncMonitor, Finding, Monitor, MonitorLoadError, MonitorOverloaded, Span
from monitors.batcher import MicroBatcher
from monitors.config import BudgetSpec, MonitorSpec
from monitors.holds import chars_hold, sentence_hold, word_hold
from monitors.metrics import MonitorMetrics
from monitors.redact import excerpt
from monitors.registry import MonitorRegistry

__all__ = ["Decision", "MonitorOverloaded", "MonitorPipeline", "StageResult"]

logger = logging.getLogger(__name__)

EventSink = Callable[["Decision", str], None]
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


def _in_thread(monitor: Monitor) -> Callable[[Sequence[str]], Awaitable[list[Finding]]]:
    """An inline monitor's check past its ``inline_max_chars``: nothing interrupts a call on
    the event loop, so a long one goes to a worker thread, where ``timeout_ms`` bounds it."""
    async def score(texts: Sequence[str]) -> list[Finding]:
        return await asyncio.to_thread(monitor.check, texts)

    return score


@dataclass
class _Entry:
    spec: MonitorSpec
    monitor: Monitor | AsyncMonitor
    score: Callable[[Sequence[str]], Awaitable[list[Finding]]]
    batcher: MicroBatcher | None = None
    # A Monitor whose instance said ``inline`` at start: its short checks are called on
    # the event loop (``inline_max_chars``); ``score`` then takes the long ones.
    inline_max_chars: int | None = None
    # Async monitors: what admission under a budget predicts from (batchers know their own).
    estimate: ServiceEstimate | None = None

    @property
    def inline(self) -> bool:
        return self.inline_max_chars is not None

    def runs_inline(self, texts: Sequence[str]) -> bool:
        """Whether this check of ``texts`` is called directly on the event loop."""
        return self.inline_max_chars is not None and sum(len(text) for text in texts) <= self.inline_max_chars

    def predicted(self, incoming: int) -> tuple[float, int]:
        """(seconds a check of ``incoming`` texts started now would take, texts ahead of it)."""
        if self.batcher is not None:
            batcher = self.batcher
            ahead = batcher.queued + (1 if batcher.busy else 0)
            return batch_wait(batcher.queued, incoming, batcher.policy.max_batch,
                              batcher.batch_seconds, batcher.busy), ahead
        if self.estimate is not None:
            return self.estimate.predict(), self.estimate.in_flight
        return 0.0, 0


@dataclass
class _Outcome:
    decision: Decision
    spans: dict[int, list[Span]] = field(default_factory=dict)
    overloaded: MonitorOverloaded | None = None


def _watched(spec: MonitorSpec, kinds: Sequence[str] | None, count: int) -> tuple[int, ...]:
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


class MonitorPipeline:
    """The configured monitors, ready to check the texts of a request stage."""

    def __init__(
        self,
        specs: Sequence[MonitorSpec],
        *,
        metrics: MonitorMetrics,
        registry: MonitorRegistry | None = None,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.perf_counter,
        budgets: BudgetSpec | None = None,
    ) -> None:
        self._specs = list(specs)
        self._metrics = metrics
        self._registry = registry
        self._on_event = on_event
        self._clock = clock
        self._budgets = budgets if budgets is not None else BudgetSpec()
        self._entries: list[_Entry] = []
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._children: dict[tuple, object] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Build every monitor; start a micro-batcher for each sync one that is not inline."""
        if self._started:
            return
        # Metrics, audit events and budgets tell monitors apart by id.
        ids = [spec.id for spec in self._specs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise MonitorLoadError(
                f"monitor ids must be unique; repeated: {', '.join(duplicates)} (set `id:` to tell them apart)"
            )
        registry = self._registry if self._registry is not None else MonitorRegistry.from_entry_points()
        for spec in self._specs:
            try:
                monitor = registry.build(spec)
            except MonitorLoadError as exc:
                await self._close_entries()
                prefix = f"monitor {spec.id!r}: "
                message = str(exc) if str(exc).startswith(prefix) else prefix + str(exc)
                raise MonitorLoadError(message) from exc
            self._entries.append(await self._wire(spec, monitor))
        for spec in self._specs:
            if spec.action == "shadow":
                continue
            for stage in spec.stages:
                # Created up front so coverage reads 1 (not "no data") before any skip.
                self._child(self._metrics.in_time, spec.id, stage)
                for reason in ("predicted", "late"):
                    self._child(self._metrics.skipped, spec.id, stage, reason)
        self._started = True

    async def _wire(self, spec: MonitorSpec, monitor: Monitor | AsyncMonitor) -> _Entry:
        if isinstance(monitor, AsyncMonitor):
            await monitor.start(self._metrics)
            return _Entry(spec, monitor, monitor.check, estimate=ServiceEstimate())
        if monitor.inline:
            return _Entry(spec, monitor, _in_thread(monitor), inline_max_chars=monitor.inline_max_chars)
        batcher = MicroBatcher(monitor.check, spec.batch, name=spec.id, metrics=self._metrics, clock=self._clock)
        await batcher.start()
        return _Entry(spec, monitor, batcher.submit, batcher)

    async def close(self) -> None:
        """Wait for shadow checks still running, then stop batchers and close monitors."""
        while self._shadow_tasks:
            results = await asyncio.gather(*list(self._shadow_tasks), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    logger.error("shadow monitor task failed at shutdown: %r", result)
        await self._close_entries()
        self._started = False

    async def _close_entries(self) -> None:
        for entry in self._entries:
            if entry.batcher is not None:
                await entry.batcher.close()
            try:
                if isinstance(entry.monitor, AsyncMonitor):
                    await entry.monitor.close()
                else:
                    entry.monitor.close()
            except Exception:  # one monitor's close must not keep the others open
                logger.exception("monitor %r failed to close", entry.spec.id)
        self._entries = []

    # -- configuration queries ---------------------------------------------

    def has_stage(self, stage: str) -> bool:
        """Whether any monitor (shadow included) runs at ``stage``."""
        return any(stage in spec.stages for spec in self._specs)

    def enforces(self, stage: str) -> bool:
        """Whether any monitor at ``stage`` can change the outcome (not shadow)."""
        return any(stage in spec.stages and spec.action != "shadow" for spec in self._specs)

    def context_chars(self, stage: str) -> int:
        """Streaming: how far back a check's context must be able to reach for every
        enforcing monitor at ``stage`` to read whole sentences (``Monitor.context_chars``)."""
        return max((entry.monitor.context_chars for entry in self._entries
                    if stage in entry.spec.stages and entry.spec.action != "shadow"),
                   default=0)

    def hold(self, stage: str, text: str, start: int, kind: str = "content") -> int:
        """Streaming: where in ``text`` the part that must stay held begins — the earliest
        any enforcing monitor that reads ``kind`` asks for — never before ``start`` (the
        first character not released yet)."""
        hold = len(text)
        for entry in self._entries:
            spec = entry.spec
            if stage not in spec.stages or spec.action == "shadow":
                continue
            if spec.fields is not None and kind not in spec.fields:
                continue
            if spec.stream_hold == "monitor":
                try:
                    at = entry.monitor.hold(text, start)
                except Exception as exc:  # holding everything is safe: said, counted, never silent
                    logger.warning("monitor %r hold() failed: %s; holding the text", spec.id,
                                   type(exc).__name__)
                    self._metrics.errors.labels(monitor=spec.id, stage=stage, kind="error").inc()
                    at = start
            elif spec.stream_hold == "word":
                at = word_hold(text)
            elif spec.stream_hold == "sentence":
                at = sentence_hold(text)
            else:
                at = chars_hold(text, start, spec.stream_hold_chars)
            hold = min(hold, at)
        return max(start, hold)

    @property
    def specs(self) -> list[MonitorSpec]:
        return list(self._specs)

    # -- checking ----------------------------------------------------------

    async def check(self, stage: str, texts: Sequence[str], *, request_id: str,
                    kinds: Sequence[str] | None = None,
                    whole: Sequence[str] | None = None,
                    context: Mapping[str, str] = NO_CONTEXT) -> StageResult:
        """Run the stage's monitors on ``texts``; ``context`` goes on every Decision.

        ``kinds`` names the field each text comes from (``content``, ``reasoning``,
        ``tool_calls``, ...): a monitor whose ``fields`` option leaves a kind out does
        not see those texts. Without ``kinds`` every monitor sees every text.

        ``whole`` (streaming) gives, per text, the longer text it is a prefix of: what
        arrived so far, where ``texts`` stop where the monitors' holds begin. Monitors
        that redact read ``whole`` (a span near the cut is then found as the whole
        answer will have it, and held whole); the others judge ``texts``.

        Raises MonitorOverloaded when the first blocking verdict is a fail-closed
        monitor whose queue is full (the gateway answers 503 with Retry-After).
        """
        if not self._started:
            raise RuntimeError("MonitorPipeline.check called before start()")
        started = self._clock()
        texts = tuple(texts)
        result = StageResult(None, [[] for _ in texts], [], [], 0.0)
        if not texts:
            return result
        enforced: list[tuple[_Entry, tuple[int, ...]]] = []
        for entry in self._entries:
            if stage not in entry.spec.stages:
                continue
            watched = _watched(entry.spec, kinds, len(texts))
            if not watched:
                continue
            if entry.spec.action == "shadow":
                self._spawn_shadow(entry, stage, texts, request_id, watched, context)
            else:
                enforced.append((entry, watched))
        budget_s = self._budgets.seconds(stage)
        deadline = Deadline(started, budget_s) if budget_s is not None else None

        def evaluate(entry: _Entry, watched: tuple[int, ...]) -> Awaitable[_Outcome | None]:
            read = tuple(whole) if whole is not None and entry.spec.action == "redact" else texts
            run = self._evaluate(entry, stage, read, request_id, watched)
            if deadline is None or entry.inline:
                return run  # inline checks take microseconds: nothing to predict
            return self._budgeted(entry, stage, run, len(watched), deadline, request_id, context)

        # Streams check at nearly every token: inline monitors are called directly and a
        # task per monitor is made only where two or more can wait at once.
        outcomes: list[_Outcome | None] = [None] * len(enforced)
        waiting: list[int] = []
        for position, (entry, watched) in enumerate(enforced):
            if entry.inline:
                outcomes[position] = await evaluate(entry, watched)
            else:
                waiting.append(position)
        if len(waiting) == 1:
            outcomes[waiting[0]] = await evaluate(*enforced[waiting[0]])
        elif waiting:
            for position, outcome in zip(waiting, await asyncio.gather(
                    *(evaluate(*enforced[position]) for position in waiting)), strict=True):
                outcomes[position] = outcome
        overloaded: MonitorOverloaded | None = None
        for (entry, _), outcome in zip(enforced, outcomes, strict=True):
            if outcome is None:  # gave way to the budget: counted where it was decided
                result.skipped.append(entry.spec.id)
                continue
            decision = outcome.decision
            if decision.error is None:
                self._child(self._metrics.in_time, decision.monitor_id, stage).inc()
            decision.context = context
            self._record(decision, request_id)
            result.decisions.append(decision)
            if decision.action == "block":
                if result.blocked_by is None:
                    result.blocked_by = decision
                    overloaded = outcome.overloaded
            elif decision.action == "redact":
                for index, spans in outcome.spans.items():
                    result.redactions[index].extend(spans)
            elif decision.action == "annotate":
                result.annotations.append(decision)
        result.elapsed_s = self._clock() - started
        if overloaded is not None:
            raise overloaded
        return result

    async def _budgeted(self, entry: _Entry, stage: str, run: Coroutine[None, None, _Outcome], incoming: int,
                        deadline: Deadline, request_id: str, context: Mapping[str, str]
                        ) -> _Outcome | None:
        """``run`` under the stage budget; None when a ``degrade: skip`` monitor gave way."""
        spec = entry.spec
        remaining = deadline.remaining(self._clock())
        predicted, ahead = entry.predicted(incoming)
        if not admits(predicted, remaining, ahead):
            if spec.degrade == "skip":
                run.close()  # never started: nothing queued, nothing to wait for
                self._child(self._metrics.skipped, spec.id, stage, "predicted").inc()
                return None
            if spec.on_error == "closed":
                run.close()
                # Queueing would only make the request wait past its budget and then block:
                # shed it now, with a Retry-After from the prediction.
                logger.warning("monitor %r predicted %.0f ms at stage %s, request %s: shed",
                               spec.id, predicted * 1000, stage, request_id)
                return self._failure(spec, stage, "overload", 0.0,
                                     MonitorOverloaded(spec.id, retry_after(predicted)))
        if spec.degrade != "skip":
            return await run
        task = asyncio.ensure_future(run)
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, remaining))
        except BaseException:
            task.cancel()  # the request went away: so does its check
            raise
        if task in done:
            return task.result()
        self._child(self._metrics.skipped, spec.id, stage, "late").inc()
        # Still bounded by timeout_ms; close() waits for it like a shadow check.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)
        task.add_done_callback(lambda finished: self._late_verdict(finished, request_id, context))
        return None

    def _late_verdict(self, task: asyncio.Task[_Outcome], request_id: str,
                      context: Mapping[str, str]) -> None:
        """Record a check that finished after the request moved on, as a shadow verdict:
        audited and counted, enforcing nothing (its action reads ``shadow`` on a hit)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("late monitor check failed: %r", exc)
            return
        decision = task.result().decision
        if decision.hit:
            decision.action = "shadow"
        elif decision.action == "block":  # a fail-closed error: it blocked nothing
            decision.action = "pass"
        decision.failed_open = False  # already counted as skipped (late)
        decision.context = context
        self._record(decision, request_id)

    def _spawn_shadow(self, entry: _Entry, stage: str, texts: tuple[str, ...], request_id: str,
                      watched: tuple[int, ...], context: Mapping[str, str]) -> None:
        task = asyncio.create_task(self._shadow(entry, stage, texts, request_id, watched, context),
                                   name=f"shadow-{entry.spec.id}")
        # Keep a reference: the loop holds tasks weakly, and close() waits for these.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, entry: _Entry, stage: str, texts: tuple[str, ...], request_id: str,
                      watched: tuple[int, ...], context: Mapping[str, str]) -> None:
        outcome = await self._evaluate(entry, stage, texts, request_id, watched)
        outcome.decision.context = context
        self._record(outcome.decision, request_id)

    async def _evaluate(self, entry: _Entry, stage: str, all_texts: tuple[str, ...], request_id: str,
                        watched: tuple[int, ...]) -> _Outcome:
        outcome = await self._evaluate_texts(entry, stage, tuple(all_texts[i] for i in watched), request_id)
        if len(watched) == len(all_texts):
            return outcome
        # Back to the caller's numbering of the texts.
        outcome.spans = {watched[i]: spans for i, spans in outcome.spans.items()}
        if outcome.decision.text_index is not None:
            outcome.decision.text_index = watched[outcome.decision.text_index]
        return outcome

    async def _evaluate_texts(self, entry: _Entry, stage: str, texts: tuple[str, ...], request_id: str) -> _Outcome:
        spec = entry.spec
        started = self._clock()
        error: str | None = None
        overloaded: MonitorOverloaded | None = None
        findings: list[Finding] = []
        ticket = entry.estimate.begin(started, len(texts)) if entry.estimate is not None else None
        try:
            if entry.runs_inline(texts):
                findings = entry.monitor.check(texts)  # microseconds: no timer, no task
                # Nothing interrupts a call on the event loop; one that overran its
                # timeout_ms still counts as timed out, its verdict unused, as elsewhere.
                if self._clock() - started > spec.timeout_ms / 1000.0:
                    raise TimeoutError
            else:
                findings = await asyncio.wait_for(entry.score(texts), spec.timeout_ms / 1000.0)
            if len(findings) != len(texts):
                raise ValueError(f"returned {len(findings)} findings for {len(texts)} texts")
        except TimeoutError:
            error = "timeout"
        except MonitorOverloaded as exc:
            error = "overload"
            overloaded = MonitorOverloaded(spec.id, exc.retry_after_s)
        except Exception as exc:  # any monitor failure becomes a counted, logged verdict
            error = "error"
            logger.warning(
                "monitor %r (%s) failed at stage %s, request %s: %s",
                spec.id, spec.name, stage, request_id, type(exc).__name__,
            )
            # The message may quote the text being checked; keep it out of normal logs.
            logger.debug("monitor %r failure detail", spec.id, exc_info=exc)
        finally:
            if ticket is not None:
                entry.estimate.end(ticket, self._clock())
        duration = self._clock() - started
        self._child(self._metrics.duration, spec.id, stage).observe(duration)
        if error is not None:
            if error != "error":
                logger.warning(
                    "monitor %r (%s) %s at stage %s, request %s",
                    spec.id, spec.name, error, stage, request_id,
                )
            return self._failure(spec, stage, error, duration, overloaded)
        return self._verdict(spec, stage, texts, findings, duration)

    def _failure(
        self, spec: MonitorSpec, stage: str, error: str, duration: float, overloaded: MonitorOverloaded | None
    ) -> _Outcome:
        shadow = spec.action == "shadow"
        closed = spec.on_error == "closed" and not shadow
        decision = Decision(
            monitor_id=spec.id, monitor_name=spec.name, stage=stage,
            action="block" if closed else "pass", hit=False, score=0.0, labels={},
            error=error, failed_open=not closed and not shadow, text_index=None,
            excerpt="", duration_s=duration,
        )
        return _Outcome(decision, overloaded=overloaded if closed else None)

    def _verdict(
        self, spec: MonitorSpec, stage: str, texts: tuple[str, ...], findings: list[Finding], duration: float
    ) -> _Outcome:
        hits = [i for i, finding in enumerate(findings) if is_hit(spec, finding)]
        if not hits:
            labels: dict[str, float] = {}
            for finding in findings:
                for label, value in finding.labels.items():
                    labels[label] = max(float(value), labels.get(label, 0.0))
            decision = Decision(
                monitor_id=spec.id, monitor_name=spec.name, stage=stage, action="pass", hit=False,
                score=max(float(f.score) for f in findings), labels=labels, error=None,
                failed_open=False, text_index=None, excerpt="", duration_s=duration,
            )
            return _Outcome(decision)
        first = hits[0]
        finding = findings[first]
        spans = {i: _spans_or_whole(findings[i], texts[i], spec.name) for i in hits}
        decision = Decision(
            monitor_id=spec.id, monitor_name=spec.name, stage=stage, action=spec.action, hit=True,
            score=float(finding.score), labels={k: float(v) for k, v in finding.labels.items()},
            error=None, failed_open=False, text_index=first,
            excerpt=excerpt(texts[first], spans[first]), duration_s=duration,
        )
        return _Outcome(decision, spans=spans if spec.action == "redact" else {})

    def _child(self, metric, *values: str):
        """A metric's labelled child (label values in the metric's label order), resolved
        once: streams record a check per token, and resolving costs more than the update."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _record(self, decision: Decision, request_id: str) -> None:
        self._child(self._metrics.verdicts, decision.monitor_id, decision.stage, decision.action).inc()
        labels = {"monitor": decision.monitor_id, "stage": decision.stage}
        if decision.error is not None:
            self._metrics.errors.labels(kind=decision.error, **labels).inc()
        if decision.failed_open:
            self._metrics.fail_open.labels(**labels).inc()
        if (decision.hit or decision.error is not None) and self._on_event is not None:
            try:
                self._on_event(decision, request_id)
            except Exception:  # the audit sink failing must not fail the request; say so loudly
                logger.exception("audit event sink failed for monitor %r", decision.monitor_id)
