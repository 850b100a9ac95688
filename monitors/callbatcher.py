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
once (the engine's own scheduler overlaps them); while they are all out, texts
accumulate, so calls grow with the load instead of multiplying.

What goes into a call and when is ``BatchPolicy``'s decision (pure, tested apart);
this module is the asyncio plumbing. ``fn`` maps a list of texts to one result per
text, in order; its failure is the failure of every text in its call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from monitors.admission import EWMA_WEIGHT
from monitors.base import MonitorOverloaded
from monitors.batcher import BatchPolicy
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics

__all__ = ["CallBatcher"]

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


@dataclass(slots=True)
class _Waiting(Generic[ResultT]):
    """One queued text and the future its submitter awaits (BatchPolicy reads ``future``)."""

    text: str
    enqueued_at: float
    future: asyncio.Future[ResultT]


class CallBatcher(Generic[ResultT]):
    """Sends the texts of concurrent submits together through ``fn``, up to ``max_in_flight``
    calls at a time. The worker starts with the first submit (it needs a running loop)."""

    def __init__(
        self,
        fn: Callable[[list[str]], Awaitable[list[ResultT]]],
        spec: BatchSpec,
        *,
        name: str,
        max_in_flight: int = 4,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._fn = fn
        self._policy = BatchPolicy(spec)
        self._name = name
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._queue: deque[_Waiting[ResultT]] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._call_seconds = spec.max_wait_ms / 1000.0
        self._closed = False
        self._batch_size = None
        self._queue_wait = None

    def observe(self, metrics: MonitorMetrics) -> None:
        """Record texts per call and queue waits on ``metrics`` (the pipeline's registry)."""
        self._batch_size = metrics.batch_size.labels(monitor=self._name)
        self._queue_wait = metrics.queue_wait.labels(monitor=self._name)

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
        if not self._policy.admits(len(self._queue), len(texts)):
            # max_in_flight calls drain the queue together.
            per_call = self._call_seconds / self._max_in_flight
            raise MonitorOverloaded(self._name, self._policy.retry_after(len(self._queue), per_call))
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"call-batcher-{self._name}")
        loop = asyncio.get_running_loop()
        now = self._clock()
        futures = [loop.create_future() for _ in texts]
        self._queue.extend(_Waiting(text, now, future) for text, future in zip(texts, futures, strict=True))
        self._arrived.set()
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            # Timed out or failed: texts of this submit still queued are dropped; a call
            # already out goes on for the other submits' texts it carries.
            for future in futures:
                future.cancel()
            raise

    async def close(self) -> None:
        """Stop the worker and the calls in flight; texts still waiting fail."""
        self._closed = True
        tasks = [t for t in (self._worker, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None
        shut = RuntimeError(f"monitor {self._name!r} is shut down")
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(shut)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._call(batch), name=f"call-{self._name}")
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _next_batch(self) -> list[_Waiting[ResultT]]:
        """Wait until the policy says a call is due, then cut it."""
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # its submit gave up while it waited
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delay = self._policy.delay(len(self._queue), self._queue[0].enqueued_at, self._clock())
            if delay <= 0:
                batch = self._policy.take(self._queue)  # type: ignore[arg-type]
                if batch:
                    return batch
                continue
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), delay)
            except TimeoutError:
                pass  # the oldest text's wait is over: loop round and cut

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
            logger.warning("monitor %r: a call of %d texts failed: %s: %s", self._name, len(batch),
                           type(exc).__name__, exc)
            self._fail(batch, exc)
            return
        finally:
            self._slots.release()
            elapsed = self._clock() - started
            self._call_seconds += EWMA_WEIGHT * (elapsed - self._call_seconds)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Waiting[ResultT]], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)
