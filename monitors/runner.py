"""How one configured monitor is called: inline on the event loop, in a worker thread,
through a micro-batcher, or awaited (async monitors), always under its ``timeout_ms``.

A ``MonitorRunner`` turns any failure of a check (an exception, a timeout, a full queue)
into a counted, logged verdict (``monitors.verdicts.failure``): a monitor failure is
never silent. It also says what admission under a stage budget predicts from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from monitors.admission import ServiceEstimate, batch_wait
from monitors.base import AsyncMonitor, Finding, Monitor, MonitorOverloaded
from monitors.batcher import MicroBatcher
from monitors.config import MonitorSpec
from monitors.recorder import VerdictRecorder
from monitors.verdicts import Outcome, failure, renumber, verdict

__all__ = ["MonitorRunner", "runner_for"]

logger = logging.getLogger(__name__)

Score = Callable[[Sequence[str]], Awaitable[list[Finding]]]


def _in_thread(monitor: Monitor) -> Score:
    """An inline monitor's check past its ``inline_max_chars``: nothing interrupts a call on
    the event loop, so a long one goes to a worker thread, where ``timeout_ms`` bounds it."""

    async def score(texts: Sequence[str]) -> list[Finding]:
        return await asyncio.to_thread(monitor.check, texts)

    return score


async def runner_for(
    spec: MonitorSpec, monitor: Monitor | AsyncMonitor, recorder: VerdictRecorder, clock: Callable[[], float]
) -> MonitorRunner:
    """The runner of a built monitor; a micro-batcher, started, for a sync one not inline."""
    if isinstance(monitor, AsyncMonitor):
        await monitor.start(recorder.metrics)  # one that batches records its calls there
        return MonitorRunner(spec, monitor, monitor.check, recorder, clock, estimate=ServiceEstimate())
    if monitor.inline:
        return MonitorRunner(
            spec, monitor, _in_thread(monitor), recorder, clock, inline_max_chars=monitor.inline_max_chars
        )
    batcher = MicroBatcher(monitor.check, spec.batch, name=spec.id, metrics=recorder.metrics, clock=clock)
    await batcher.start()
    return MonitorRunner(spec, monitor, batcher.submit, recorder, clock, batcher=batcher)


@dataclass
class MonitorRunner:
    spec: MonitorSpec
    monitor: Monitor | AsyncMonitor
    score: Score
    recorder: VerdictRecorder
    clock: Callable[[], float]
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
            return batch_wait(
                batcher.queued, incoming, batcher.policy.max_batch, batcher.batch_seconds, batcher.busy
            ), ahead
        if self.estimate is not None:
            return self.estimate.predict(), self.estimate.in_flight
        return 0.0, 0

    async def close_monitor(self) -> None:
        """The monitor's own close (its batcher, if any, is stopped first by the caller)."""
        if isinstance(self.monitor, AsyncMonitor):
            await self.monitor.close()
        else:
            self.monitor.close()

    async def run(self, stage: str, all_texts: tuple[str, ...], request_id: str, watched: tuple[int, ...]) -> Outcome:
        """The monitor's outcome on the ``watched`` texts of ``all_texts``."""
        if len(watched) == len(all_texts):  # every text: nothing to pick or renumber
            return await self._run(stage, all_texts, request_id)
        outcome = await self._run(stage, tuple(all_texts[i] for i in watched), request_id)
        return renumber(outcome, watched)

    async def _run(self, stage: str, texts: tuple[str, ...], request_id: str) -> Outcome:
        spec = self.spec
        started = self.clock()
        error: str | None = None
        overloaded: MonitorOverloaded | None = None
        findings: list[Finding] = []
        ticket = self.estimate.begin(started, len(texts)) if self.estimate is not None else None
        try:
            findings = await self._findings(texts, started)
        except TimeoutError:
            error = "timeout"
        except MonitorOverloaded as exc:
            error = "overload"
            overloaded = MonitorOverloaded(spec.id, exc.retry_after_s)
        except Exception as exc:  # any monitor failure becomes a counted, logged verdict
            error = "error"
            logger.warning(
                "monitor %r (%s) failed at stage %s, request %s: %s",
                spec.id,
                spec.name,
                stage,
                request_id,
                type(exc).__name__,
            )
            # The message may quote the text being checked; keep it out of normal logs.
            logger.debug("monitor %r failure detail", spec.id, exc_info=exc)
        finally:
            if ticket is not None:
                self.estimate.end(ticket, self.clock())
        duration = self.clock() - started
        self.recorder.duration(spec.id, stage, duration)
        if error is None:
            return verdict(spec, stage, texts, findings, duration)
        if error != "error":
            logger.warning("monitor %r (%s) %s at stage %s, request %s", spec.id, spec.name, error, stage, request_id)
        return failure(spec, stage, error, duration, overloaded)

    async def _findings(self, texts: tuple[str, ...], started: float) -> list[Finding]:
        timeout_s = self.spec.timeout_ms / 1000.0
        if self.runs_inline(texts):
            findings = self.monitor.check(texts)  # microseconds: no timer, no task
            # Nothing interrupts a call on the event loop; one that overran its
            # timeout_ms still counts as timed out, its verdict unused, as elsewhere.
            if self.clock() - started > timeout_s:
                raise TimeoutError
        else:
            async with asyncio.timeout(timeout_s):  # no task per check, unlike wait_for
                findings = await self.score(texts)
        if len(findings) != len(texts):
            raise ValueError(f"returned {len(findings)} findings for {len(texts)} texts")
        return findings
