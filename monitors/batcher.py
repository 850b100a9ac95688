"""Micro-batching for CPU/GPU-bound monitors.

Texts from concurrent requests are queued and scored together in one call of the
monitor, in a dedicated worker thread, so a model pays one forward pass for many
requests and the event loop never blocks on it. Waits, batch sizes and the queue
are all bounded (``BatchSpec``).

``BatchPolicy`` decides *what* goes into the next batch and *when*; it is pure and
tested on its own. ``MicroBatcher`` is the asyncio plumbing around it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from monitors.base import Finding, MonitorOverloaded
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics

__all__ = ["BatchPolicy", "MicroBatcher", "MonitorOverloaded"]

logger = logging.getLogger(__name__)

# Weight of the latest batch in the running estimate of a batch's duration.
_EWMA_WEIGHT = 0.2
# Retry-After is advice; keep it within reason whatever the estimate says.
_MIN_RETRY_AFTER_S = 0.05
_MAX_RETRY_AFTER_S = 30.0


@dataclass(slots=True)
class _Pending:
    """One queued text and the future its submitter awaits."""

    text: str
    enqueued_at: float
    future: asyncio.Future[Finding]


class BatchPolicy:
    """Batching decisions, free of I/O and of asyncio."""

    def __init__(self, spec: BatchSpec) -> None:
        self.max_batch = spec.max_batch
        self.max_queue = spec.max_queue
        self.max_wait_s = spec.max_wait_ms / 1000.0

    def admits(self, queued: int, incoming: int) -> bool:
        """Whether ``incoming`` more texts fit behind ``queued`` ones.

        A submit larger than the whole queue is still admitted into an empty queue,
        otherwise it could never run at all.
        """
        return queued + incoming <= self.max_queue or queued == 0

    def delay(self, queued: int, oldest_enqueued_at: float, now: float) -> float:
        """Seconds to wait before cutting the next batch (0: cut it now).

        A full batch goes at once; otherwise the oldest text waits at most max_wait.
        """
        if queued >= self.max_batch:
            return 0.0
        return max(0.0, oldest_enqueued_at + self.max_wait_s - now)

    def take(self, queue: deque[_Pending]) -> list[_Pending]:
        """Pop up to max_batch live items from the head, dropping cancelled ones."""
        batch: list[_Pending] = []
        while queue and len(batch) < self.max_batch:
            item = queue.popleft()
            if not item.future.done():
                batch.append(item)
        return batch

    def retry_after(self, queued: int, batch_seconds: float) -> float:
        """How long until the queue has drained, given the typical batch duration."""
        batches_ahead = math.ceil(queued / self.max_batch) if queued else 1
        estimate = batches_ahead * batch_seconds
        return min(_MAX_RETRY_AFTER_S, max(_MIN_RETRY_AFTER_S, estimate))


class MicroBatcher:
    """Scores texts through ``fn`` in batches, one batch at a time, off the event loop."""

    def __init__(
        self,
        fn: Callable[[list[str]], list[Finding]],
        spec: BatchSpec,
        *,
        name: str,
        metrics: MonitorMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._fn = fn
        self._policy = BatchPolicy(spec)
        self._name = name
        self._clock = clock
        self._queue_wait = metrics.queue_wait.labels(monitor=name)
        self._batch_size = metrics.batch_size.labels(monitor=name)
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._batch_seconds = spec.max_wait_ms / 1000.0
        self._busy = False
        self._closed = False

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether a batch is being scored now (admission counts it ahead of new texts)."""
        return self._busy

    @property
    def batch_seconds(self) -> float:
        """The running estimate of one batch's duration."""
        return self._batch_seconds

    async def start(self) -> None:
        if self._worker is not None:
            return
        # One thread per monitor: batches of one model never run concurrently, which
        # is what torch and sklearn models expect, and a slow model does not starve others.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"monitor-{self._name}")
        self._worker = asyncio.create_task(self._run(), name=f"batcher-{self._name}")

    async def close(self) -> None:
        """Stop the worker; texts still queued fail with RuntimeError."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass  # the cancellation we just asked for
            self._worker = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError(f"monitor {self._name!r} is shut down"))
        if self._executor is not None:
            # Waits for a batch still in the thread; done off the loop so the loop keeps going.
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None

    async def submit(self, texts: Sequence[str]) -> list[Finding]:
        """Score ``texts``; they may share a batch with other callers' texts."""
        if not texts:
            return []
        if self._closed or self._worker is None:
            raise RuntimeError(f"monitor {self._name!r} batcher is not running")
        if not self._policy.admits(len(self._queue), len(texts)):
            retry = self._policy.retry_after(len(self._queue), self._batch_seconds)
            raise MonitorOverloaded(self._name, retry)
        loop = asyncio.get_running_loop()
        now = self._clock()
        futures = [loop.create_future() for _ in texts]
        self._queue.extend(_Pending(text, now, future) for text, future in zip(texts, futures, strict=True))
        self._arrived.set()
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            # Cancelled (a timeout) or failed: drop this submit's texts still queued so
            # the worker skips them; other callers' texts in the same batch are unaffected.
            for future in futures:
                future.cancel()
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            started = self._clock()
            for item in batch:
                self._queue_wait.observe(started - item.enqueued_at)
            self._batch_size.observe(len(batch))
            texts = [item.text for item in batch]
            self._busy = True
            try:
                findings = await loop.run_in_executor(self._executor, self._fn, texts)
                if len(findings) != len(texts):
                    raise ValueError(f"monitor {self._name!r} returned {len(findings)} findings for {len(texts)} texts")
            except asyncio.CancelledError:
                self._fail(batch, RuntimeError(f"monitor {self._name!r} is shut down"))
                raise
            except Exception as exc:  # the monitor's failure belongs to the texts of this batch
                self._fail(batch, exc)
                continue
            finally:
                self._busy = False
                elapsed = self._clock() - started
                self._batch_seconds += _EWMA_WEIGHT * (elapsed - self._batch_seconds)
            if len(findings) != len(batch):
                self._fail(
                    batch,
                    ValueError(f"monitor {self._name!r} returned {len(findings)} findings for {len(batch)} texts"),
                )
                continue
            for item, finding in zip(batch, findings, strict=True):
                if not item.future.done():
                    item.future.set_result(finding)

    async def _next_batch(self) -> list[_Pending]:
        """Wait until the policy says a batch is due, then cut it."""
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # cancelled while waiting: no need to score it
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delay = self._policy.delay(len(self._queue), self._queue[0].enqueued_at, self._clock())
            if delay <= 0:
                batch = self._policy.take(self._queue)
                if batch:
                    return batch
                continue
            # Wake early when more texts arrive: they may fill the batch before the deadline.
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), delay)
            except TimeoutError:
                pass  # the deadline passed: loop round and cut the batch

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)
