"""Batching across requests for monitors that call a serving engine.

A guard model on vLLM's pooling runner (or behind the FMS Detectors API) scores a
list of texts per HTTP call, and the engine batches what it is given on its GPU. The
gateway's part is to give it lists worth batching: texts of concurrent checks
(requests, streams) are queued here and go out together, one call carrying many.

Bounds, from the monitor's ``batch`` settings (``BatchSpec``, as for the
micro-batcher of in-process models): at most ``max_batch`` texts a call, the oldest
text waits at most ``max_wait_ms`` before its call is cut, at most ``max_queue`` texts
wait (beyond that a submit fails with MonitorOverloaded). Unlike the micro-batcher,
which runs one batch at a time in one thread, up to ``max_in_flight`` calls run at
once (the engine's own scheduler overlaps them).

When to send is ``CallPolicy``'s decision: an idle engine gets a text at once (waiting
for company that is not coming would only add latency at low load: the texts of one
event-loop turn still go together); while calls are out, texts wait up to
``max_wait_ms`` for company, and while every slot is taken they accumulate, so calls
grow with the load instead of multiplying. What goes into a call is ``BatchPolicy``'s
(both pure, tested apart); the rest is asyncio plumbing, driven by callbacks, not a
task that polls: a served classifier is called at nearly every token of every
stream, so the gateway's CPU per call counts. ``fn`` maps a list of texts to one
result per text, in order; its failure is the failure of every text in its call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from monitors.admission import EWMA_WEIGHT
from monitors.base import MonitorOverloaded
from monitors.batcher import BatchPolicy
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics

__all__ = ["CallBatcher", "CallPolicy"]

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


class CallPolicy:
    """When the next call goes: pure, no asyncio, no clock of its own."""

    def __init__(self, spec: BatchSpec, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_batch = spec.max_batch
        self.max_wait_s = spec.max_wait_ms / 1000.0
        self.max_in_flight = max_in_flight

    def delay(self, queued: int, waited_s: float, in_flight: int) -> float | None:
        """Seconds until a call of the queued texts should go (0: now), or None: not until
        a call in flight returns. ``waited_s``: how long the oldest queued text has waited."""
        if queued == 0 or in_flight >= self.max_in_flight:
            return None
        if in_flight == 0 or queued >= self.max_batch:
            return 0.0
        return max(0.0, self.max_wait_s - waited_s)


@dataclass(slots=True)
class _Waiting(Generic[ResultT]):
    """One queued text and the future its submitter awaits (BatchPolicy reads ``future``)."""

    text: str
    enqueued_at: float
    future: asyncio.Future[ResultT]


class CallBatcher(Generic[ResultT]):
    """Sends the texts of concurrent submits together through ``fn``, up to
    ``max_in_flight`` calls at a time (see the module doc)."""

    def __init__(
        self,
        fn: Callable[[list[str]], Awaitable[list[ResultT]]],
        spec: BatchSpec,
        *,
        name: str,
        max_in_flight: int = 4,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._fn = fn
        self._when = CallPolicy(spec, max_in_flight)
        self._what = BatchPolicy(spec)
        self._name = name
        self._clock = clock
        self._queue: deque[_Waiting[ResultT]] = deque()
        self._calls: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Handle | None = None
        self._call_seconds = spec.max_wait_ms / 1000.0
        self._closed = False
        self._batch_size: Any = None
        self._queue_wait: Any = None
        self._call_duration: Any = None

    def observe(self, metrics: MonitorMetrics) -> None:
        """Record texts per call, queue waits and call durations on ``metrics`` (the
        pipeline's registry)."""
        self._batch_size = metrics.batch_size.labels(monitor=self._name)
        self._queue_wait = metrics.queue_wait.labels(monitor=self._name)
        self._call_duration = metrics.call_duration.labels(monitor=self._name)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    @property
    def call_seconds(self) -> float:
        """The running estimate of one call's duration."""
        return self._call_seconds

    async def submit(self, texts: Sequence[str]) -> list[ResultT]:
        """One result per text; the texts may share calls with other submits' texts."""
        if not texts:
            return []
        if self._closed:
            raise RuntimeError(f"monitor {self._name!r} is shut down")
        if not self._what.admits(len(self._queue), len(texts)):
            # max_in_flight calls drain the queue together.
            per_call = self._call_seconds / self._when.max_in_flight
            raise MonitorOverloaded(self._name, self._what.retry_after(len(self._queue), per_call))
        loop = asyncio.get_running_loop()
        now = self._clock()
        futures = [loop.create_future() for _ in texts]
        self._queue.extend(_Waiting(text, now, future) for text, future in zip(texts, futures, strict=True))
        self._schedule()
        try:
            return list(await asyncio.gather(*futures)) if len(futures) > 1 else [await futures[0]]
        except BaseException:
            # Timed out or failed: texts of this submit still queued are dropped; a call
            # already out goes on for the other submits' texts it carries.
            for future in futures:
                future.cancel()
            raise

    async def close(self) -> None:
        """Stop the calls in flight; texts still waiting fail."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        shut = RuntimeError(f"monitor {self._name!r} is shut down")
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(shut)

    def _schedule(self) -> None:
        """Send a call now, or arm the one timer for when one is due."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()  # its submit gave up while it waited
        if self._closed:
            return
        delay = self._when.delay(
            len(self._queue), self._clock() - self._queue[0].enqueued_at if self._queue else 0.0, len(self._calls)
        )
        if delay is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        # call_soon even when due now: the texts submitted in this turn of the loop join.
        self._timer = loop.call_later(delay, self._cut) if delay > 0 else loop.call_soon(self._cut)

    def _cut(self) -> None:
        self._timer = None
        if self._closed:
            return
        batch = self._what.take(self._queue)  # type: ignore[arg-type]
        if batch:
            task = asyncio.get_running_loop().create_task(self._call(batch), name=f"call-{self._name}")
            self._calls.add(task)
            task.add_done_callback(self._finished)
        self._schedule()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._schedule()

    async def _call(self, batch: list[_Waiting[ResultT]]) -> None:
        started = self._clock()
        if self._batch_size is not None:
            self._batch_size.observe(len(batch))
            for item in batch:
                self._queue_wait.observe(started - item.enqueued_at)
        try:
            results = await self._fn([item.text for item in batch])
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} results for {len(batch)} texts")
        except asyncio.CancelledError:
            self._fail(batch, RuntimeError(f"monitor {self._name!r} is shut down"))
            raise
        except Exception as exc:  # the call's failure is every one of its texts' failure
            # Once per call (the pipeline logs each check with its request id); the
            # message names the fault, never a text.
            logger.warning(
                "monitor %r: a call of %d texts failed: %s: %s", self._name, len(batch), type(exc).__name__, exc
            )
            self._fail(batch, exc)
            return
        finally:
            elapsed = self._clock() - started
            self._call_seconds += EWMA_WEIGHT * (elapsed - self._call_seconds)
            if self._call_duration is not None:
                self._call_duration.observe(elapsed)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Waiting[ResultT]], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)
