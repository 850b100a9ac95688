"""A stage budget at work: admission before a check is queued, and late verdicts.

Under a stage budget (``budgets``, see monitors/admission.py for the pure rules) a
``degrade: skip`` monitor whose predicted wait does not fit what is left of the budget
is not queued (skipped, counted), and one that runs past it is let go of: the request
moves on and the verdict, when it comes, is recorded like a shadow one. A fail-closed
monitor is never skipped: predicted over budget, it sheds the request
(MonitorOverloaded: 503).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping

from monitors.admission import Deadline, admits, retry_after
from monitors.base import MonitorOverloaded
from monitors.recorder import VerdictRecorder
from monitors.runner import MonitorRunner
from monitors.verdicts import Outcome, failure, late

__all__ = ["Budget"]

logger = logging.getLogger(__name__)


class Budget:
    """Runs checks under a stage's deadline. ``background`` holds the late checks still
    running (the pipeline waits for them at close, as for shadow checks)."""

    def __init__(self, clock: Callable[[], float], recorder: VerdictRecorder, background: set[asyncio.Task]) -> None:
        self._clock = clock
        self._recorder = recorder
        self._background = background

    async def run(
        self,
        runner: MonitorRunner,
        stage: str,
        run: Coroutine[None, None, Outcome],
        incoming: int,
        deadline: Deadline,
        request_id: str,
        context: Mapping[str, str],
    ) -> Outcome | None:
        """``run`` under the stage budget; None when a ``degrade: skip`` monitor gave way."""
        spec = runner.spec
        remaining = deadline.remaining(self._clock())
        predicted, ahead = runner.predicted(incoming)
        if not admits(predicted, remaining, ahead):
            if spec.degrade == "skip":
                run.close()  # never started: nothing queued, nothing to wait for
                self._recorder.skipped(spec.id, stage, "predicted")
                return None
            if spec.on_error == "closed":
                run.close()
                # Queueing would only make the request wait past its budget and then block:
                # shed it now, with a Retry-After from the prediction.
                logger.warning(
                    "monitor %r predicted %.0f ms at stage %s, request %s: shed",
                    spec.id,
                    predicted * 1000,
                    stage,
                    request_id,
                )
                return failure(spec, stage, "overload", 0.0, MonitorOverloaded(spec.id, retry_after(predicted)))
        if spec.degrade != "skip":
            return await run
        return await self._until(runner, stage, run, remaining, request_id, context)

    async def _until(
        self,
        runner: MonitorRunner,
        stage: str,
        run: Coroutine[None, None, Outcome],
        remaining: float,
        request_id: str,
        context: Mapping[str, str],
    ) -> Outcome | None:
        """A ``degrade: skip`` check waited for at most ``remaining`` seconds."""
        task = asyncio.ensure_future(run)
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, remaining))
        except BaseException:
            task.cancel()  # the request went away: so does its check
            raise
        if task in done:
            return task.result()
        self._recorder.skipped(runner.spec.id, stage, "late")
        # Still bounded by timeout_ms; close() waits for it like a shadow check.
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda finished: self._late_verdict(finished, request_id, context))
        return None

    def _late_verdict(self, task: asyncio.Task[Outcome], request_id: str, context: Mapping[str, str]) -> None:
        """Record a check that finished after the request moved on, as a shadow verdict:
        audited and counted, enforcing nothing."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("late monitor check failed: %r", exc)
            return
        decision = late(task.result().decision)
        decision.context = context
        self._recorder.record(decision, request_id)
