"""Runs a stage's monitors on texts and turns their scores into one decision.

The monitors of a stage run concurrently, each under its own timeout. A monitor
that fails is never ignored: it blocks when configured ``on_error: closed`` and is
counted as a fail-open pass when ``open``. Shadow monitors run off the critical
path; their verdicts are recorded when they finish. Metrics are labelled with the
monitor's *id* (the same monitor name may be configured twice, e.g. with different
thresholds per stage).

This module keeps the lifecycle (build, start, close) and the fan-out of one check;
the parts are their own modules:

- ``monitors.verdicts``: findings -> Decision, decisions -> StageResult (pure);
- ``monitors.runner``: how one monitor is called (inline, thread, micro-batch, async);
- ``monitors.budget``: admission under a stage budget, late verdicts;
- ``monitors.stream_holds``: what a stream must hold back for a stage's monitors;
- ``monitors.recorder``: every verdict counted and handed to the audit sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from monitors.admission import Deadline
from monitors.base import AsyncMonitor, Monitor, MonitorLoadError, MonitorOverloaded
from monitors.budget import Budget
from monitors.config import BudgetSpec, MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.recorder import EventSink, VerdictObserver, VerdictRecorder
from monitors.registry import MonitorRegistry
from monitors.runner import MonitorRunner, runner_for
from monitors.stream_holds import StageHolds
from monitors.verdicts import NO_CONTEXT, Decision, Outcome, StageResult, fold, is_hit, watched

__all__ = ["Decision", "MonitorOverloaded", "MonitorPipeline", "StageCheck", "StageResult", "is_hit"]

logger = logging.getLogger(__name__)

Enforced = list[tuple[MonitorRunner, tuple[int, ...]]]


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
        observer: VerdictObserver | None = None,
    ) -> None:
        self._specs = list(specs)
        self._registry = registry
        self._clock = clock
        self._budgets = budgets if budgets is not None else BudgetSpec()
        self._recorder = VerdictRecorder(metrics, on_event, observer)
        self._runners: list[MonitorRunner] = []
        self._holds: dict[str, StageHolds] = {}
        # Shadow checks and late ones still running; close() waits for them.
        self._background: set[asyncio.Task] = set()
        self._budget = Budget(clock, self._recorder, self._background)
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
            self._runners.append(await runner_for(spec, await self._build(registry, spec), self._recorder, self._clock))
        for spec in self._specs:
            if spec.action != "shadow":
                for stage in spec.stages:
                    self._recorder.ready(spec.id, stage)
        self._holds = {
            stage: StageHolds(self._runners, stage, self._recorder)
            for stage in {stage for spec in self._specs for stage in spec.stages}
        }
        self._started = True

    async def _build(self, registry: MonitorRegistry, spec: MonitorSpec) -> Monitor | AsyncMonitor:
        try:
            return registry.build(spec)
        except MonitorLoadError as exc:
            await self._close_runners()
            prefix = f"monitor {spec.id!r}: "
            message = str(exc) if str(exc).startswith(prefix) else prefix + str(exc)
            raise MonitorLoadError(message) from exc

    async def close(self) -> None:
        """Wait for shadow checks still running, then stop batchers and close monitors."""
        while self._background:
            results = await asyncio.gather(*list(self._background), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    logger.error("shadow monitor task failed at shutdown: %r", result)
        await self._close_runners()
        self._started = False

    async def _close_runners(self) -> None:
        for runner in self._runners:
            if runner.batcher is not None:
                await runner.batcher.close()
            try:
                await runner.close_monitor()
            except Exception:  # one monitor's close must not keep the others open
                logger.exception("monitor %r failed to close", runner.spec.id)
        self._runners = []
        self._holds = {}

    # -- configuration queries ---------------------------------------------

    def has_stage(self, stage: str) -> bool:
        """Whether any monitor (shadow included) runs at ``stage``."""
        return any(stage in spec.stages for spec in self._specs)

    def enforces(self, stage: str) -> bool:
        """Whether any monitor at ``stage`` can change the outcome (not shadow)."""
        return any(stage in spec.stages and spec.action != "shadow" for spec in self._specs)

    def _stage_holds(self, stage: str) -> StageHolds:
        holds = self._holds.get(stage)
        return holds if holds is not None else StageHolds(self._runners, stage, self._recorder)

    def context_chars(self, stage: str) -> int:
        """Streaming: how far back a check's context must reach (``StageHolds.context_chars``)."""
        return self._stage_holds(stage).context_chars

    def hold(self, stage: str, text: str, start: int, kind: str = "content") -> int:
        """Streaming: where in ``text`` the part that must stay held begins (``StageHolds.hold``)."""
        return self._stage_holds(stage).hold(text, start, kind)

    @property
    def specs(self) -> list[MonitorSpec]:
        return list(self._specs)

    def stage(self, stage: str, *, request_id: str, context: Mapping[str, str] = NO_CONTEXT) -> StageCheck:
        """One request's checks at ``stage``: what a stream's policy holds and checks with."""
        return StageCheck(self, stage, request_id, context)

    # -- checking ----------------------------------------------------------

    async def check(
        self,
        stage: str,
        texts: Sequence[str],
        *,
        request_id: str,
        kinds: Sequence[str] | None = None,
        whole: Sequence[str] | None = None,
        context: Mapping[str, str] = NO_CONTEXT,
    ) -> StageResult:
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
        enforced = self._fan_out(stage, texts, kinds, request_id, context)
        budget_s = self._budgets.seconds(stage)
        deadline = Deadline(started, budget_s) if budget_s is not None else None

        def evaluate(runner: MonitorRunner, seen: tuple[int, ...]) -> Awaitable[Outcome | None]:
            read = tuple(whole) if whole is not None and runner.spec.action == "redact" else texts
            run = runner.run(stage, read, request_id, seen)
            if deadline is None or runner.inline:
                return run  # inline checks take microseconds: nothing to predict
            return self._budget.run(runner, stage, run, len(seen), deadline, request_id, context)

        outcomes = await _outcomes(enforced, evaluate)
        overloaded: MonitorOverloaded | None = None
        for (runner, _), outcome in zip(enforced, outcomes, strict=True):
            if outcome is None:  # gave way to the budget: counted where it was decided
                result.skipped.append(runner.spec.id)
                continue
            outcome.decision.context = context
            self._recorder.in_time(outcome.decision, request_id)
            stopped = fold(result, outcome)
            overloaded = overloaded or stopped
        result.elapsed_s = self._clock() - started
        if overloaded is not None:
            raise overloaded
        return result

    def _fan_out(
        self,
        stage: str,
        texts: tuple[str, ...],
        kinds: Sequence[str] | None,
        request_id: str,
        context: Mapping[str, str],
    ) -> Enforced:
        """The enforcing monitors at ``stage`` with the texts each reads; shadow ones are
        started off the critical path."""
        enforced: Enforced = []
        for runner in self._runners:
            if stage not in runner.spec.stages:
                continue
            seen = watched(runner.spec, kinds, len(texts))
            if not seen:
                continue
            if runner.spec.action == "shadow":
                self._spawn_shadow(runner, stage, texts, request_id, seen, context)
            else:
                enforced.append((runner, seen))
        return enforced

    def _spawn_shadow(
        self,
        runner: MonitorRunner,
        stage: str,
        texts: tuple[str, ...],
        request_id: str,
        seen: tuple[int, ...],
        context: Mapping[str, str],
    ) -> None:
        task = asyncio.create_task(
            self._shadow(runner, stage, texts, request_id, seen, context), name=f"shadow-{runner.spec.id}"
        )
        # Keep a reference: the loop holds tasks weakly, and close() waits for these.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow(
        self,
        runner: MonitorRunner,
        stage: str,
        texts: tuple[str, ...],
        request_id: str,
        seen: tuple[int, ...],
        context: Mapping[str, str],
    ) -> None:
        outcome = await runner.run(stage, texts, request_id, seen)
        outcome.decision.context = context
        self._recorder.record(outcome.decision, request_id)


async def _outcomes(
    enforced: Enforced, evaluate: Callable[[MonitorRunner, tuple[int, ...]], Awaitable[Outcome | None]]
) -> list[Outcome | None]:
    """Every enforcing monitor's outcome, in order. Streams check at nearly every token:
    inline monitors are called directly and a task per monitor is made only where two or
    more can wait at once."""
    outcomes: list[Outcome | None] = [None] * len(enforced)
    waiting: list[int] = []
    for position, (runner, seen) in enumerate(enforced):
        if runner.inline:
            outcomes[position] = await evaluate(runner, seen)
        else:
            waiting.append(position)
    if len(waiting) == 1:
        outcomes[waiting[0]] = await evaluate(*enforced[waiting[0]])
    elif waiting:
        gathered = await asyncio.gather(*(evaluate(*enforced[position]) for position in waiting))
        for position, outcome in zip(waiting, gathered, strict=True):
            outcomes[position] = outcome
    return outcomes


class StageCheck:
    """One request's checks at one stage, bound to the pipeline: what a stream's policy
    is handed to both check text and ask how much of it to hold."""

    __slots__ = ("_pipeline", "_holds", "stage", "request_id", "context")

    def __init__(self, pipeline: MonitorPipeline, stage: str, request_id: str, context: Mapping[str, str]) -> None:
        self._pipeline = pipeline
        self._holds = pipeline._stage_holds(stage)
        self.stage = stage
        self.request_id = request_id
        self.context = context

    @property
    def context_chars(self) -> int:
        return self._holds.context_chars

    @property
    def min_new_chars(self) -> int:
        return self._holds.min_new_chars

    async def check(
        self, texts: Sequence[str], kinds: Sequence[str] | None = None, whole: Sequence[str] | None = None
    ) -> StageResult:
        """``MonitorPipeline.check`` at this stage for this request (raises MonitorOverloaded)."""
        return await self._pipeline.check(
            self.stage, texts, request_id=self.request_id, kinds=kinds, whole=whole, context=self.context
        )

    def hold(self, text: str, start: int, kind: str = "content") -> int:
        return self._holds.hold(text, start, kind)
