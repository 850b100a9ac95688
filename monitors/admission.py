"""Admission under a stage budget: will a monitor's check finish in time, or should it give way?

Pure: no asyncio, no clock of its own (callers pass ``now``), so every rule here is
unit-tested with a fake clock. The pipeline asks before it queues a check:

* ``ServiceEstimate`` follows one async monitor (an LLM judge over HTTP): an EWMA of how
  long its checks took and of how many texts were in flight while they ran. A new check
  with ``n`` texts already in flight is predicted to take ``latency × n / concurrency``
  (at least ``latency``): the monitor served ``concurrency`` at once in ``latency``, so
  more in flight means a proportionally longer wait. The prediction is deliberately
  optimistic by one check (it uses ``n``, not ``n + 1``): capacity is probed, not assumed,
  and the late path bounds what a wrong guess costs.
* ``batch_wait`` is the same question for a micro-batched monitor: the batches ahead of
  the new texts, times the batcher's running estimate of one batch.
* ``admits``: a check is queued when its prediction fits what is left of the budget, or
  when nothing is ahead of it. The second rule keeps the estimate from going stale: while
  every check is being skipped no new durations arrive, so a monitor that has recovered
  would otherwise never be tried again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EWMA_WEIGHT", "Deadline", "ServiceEstimate", "Ticket", "admits", "batch_wait", "retry_after"]

# Weight of the latest check in the running estimates (the batcher uses the same).
EWMA_WEIGHT = 0.2
# Retry-After is advice; keep it within reason whatever the estimate says.
_MIN_RETRY_AFTER_S = 0.05
_MAX_RETRY_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """A stage check's budget: it started at ``started`` and may take ``budget_s``."""

    started: float
    budget_s: float

    def remaining(self, now: float) -> float:
        return self.started + self.budget_s - now


@dataclass(frozen=True, slots=True)
class Ticket:
    """What ``ServiceEstimate.begin`` hands out and ``end`` takes back."""

    started: float
    texts: int
    seen: int  # texts in flight once this check's were added


class ServiceEstimate:
    """Latency and concurrency of one async monitor, from the checks it has served."""

    def __init__(self, weight: float = EWMA_WEIGHT) -> None:
        self._weight = weight
        self.latency_s: float | None = None  # None until a check has finished
        self.concurrency = 1.0
        self.in_flight = 0

    def begin(self, now: float, texts: int = 1) -> Ticket:
        self.in_flight += texts
        return Ticket(now, texts, self.in_flight)

    def end(self, ticket: Ticket, now: float) -> None:
        """A check finished (a verdict, an error or a timeout: all took the monitor's time)."""
        # The load the check ran under: what was in flight when it started or when it
        # ended, whichever was more (the first of a burst sees only itself at the start).
        seen = max(ticket.seen, self.in_flight)
        self.in_flight -= ticket.texts
        duration = max(0.0, now - ticket.started)
        if self.latency_s is None:
            self.latency_s = duration
            self.concurrency = float(seen)
            return
        self.latency_s += self._weight * (duration - self.latency_s)
        self.concurrency += self._weight * (seen - self.concurrency)

    def predict(self) -> float:
        """Seconds a check started now is expected to take (0 before any was seen)."""
        if self.latency_s is None:
            return 0.0
        return self.latency_s * max(1.0, self.in_flight / max(1.0, self.concurrency))


def batch_wait(queued: int, incoming: int, max_batch: int, batch_s: float, busy: bool) -> float:
    """Seconds until ``incoming`` texts queued behind ``queued`` have been scored by a
    micro-batcher that cuts ``max_batch`` texts a batch, each batch taking ``batch_s``;
    ``busy``: a batch is running now (counted whole: its start is not tracked)."""
    batches = math.ceil((queued + incoming) / max_batch) + (1 if busy else 0)
    return batches * batch_s


def admits(predicted_s: float, remaining_s: float, ahead: int) -> bool:
    """Queue the check when it is predicted to fit, or when nothing is ahead of it."""
    return ahead == 0 or predicted_s <= remaining_s


def retry_after(predicted_s: float) -> float:
    """Retry-After for a request shed because a check would not fit: the predicted wait."""
    return min(_MAX_RETRY_AFTER_S, max(_MIN_RETRY_AFTER_S, predicted_s))
