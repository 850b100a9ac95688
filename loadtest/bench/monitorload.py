"""One round of ``taxgate bench monitors``: closed-loop users scoring texts through one monitor.

In process, no HTTP: C asyncio users each submit one text at a time, the next as soon
as the last is scored, through what the gateway puts in front of the monitor: the
micro-batcher at a given ``max_batch`` for a plain ``def check``, or a direct call on
the event loop for an ``inline`` one. Latency is one text's submit-to-verdict time
(queue wait included); throughput is texts completed / (last completion - round
start). The batch sizes come from the batcher's own ``taxgate_monitor_batch_size``
histogram, on a fresh registry per round.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from monitors.base import Finding
from monitors.batcher import MicroBatcher
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics

CheckFn = Callable[[list[str]], list[Finding]]


@dataclass(frozen=True, order=True)
class Variant:
    """One monitor as the gateway would run it: batched at ``max_batch``, or inline (None)."""

    monitor: str
    max_batch: int | None

    @property
    def name(self) -> str:
        return f"{self.monitor} inline" if self.max_batch is None else f"{self.monitor} batch {self.max_batch}"


@dataclass(frozen=True)
class RoundResult:
    variant: Variant
    repeat: int
    latencies_s: tuple[float, ...]
    wall_s: float
    batches: int  # calls of the monitor's check
    batched_texts: int  # texts in those calls
    tokens: int = 0  # tokens of the texts scored (models with a tokenizer only)
    padded_tokens: int = 0  # tokens the model computed: each batch is padded to its longest text
    cpu_s: float = 0.0  # this process's CPU time: below cores x wall_s when others took the CPU

    @property
    def texts(self) -> int:
        return len(self.latencies_s)

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def padded(lengths: Sequence[int]) -> int:
    """Tokens one batch costs: every text padded to the longest (Detoxify pads with padding=True)."""
    return len(lengths) * max(lengths, default=0)


def split_encodable(
    texts: Sequence[str], encoded: Sequence[Sequence[int]], vocab_size: int
) -> tuple[dict[str, int], list[str]]:
    """``({text: tokens} of the texts the model can embed, [texts it cannot])``.

    A vocab.txt with duplicate lines gives ids past the embedding table, and such a
    text fails the whole batch it lands in; a benchmark must not stop on it.
    """
    usable: dict[str, int] = {}
    dropped = []
    for text, ids in zip(texts, encoded, strict=True):
        if max(ids, default=0) < vocab_size:
            usable[text] = len(ids)
        else:
            dropped.append(text)
    return usable, dropped


async def run_round(
    check: CheckFn,
    texts: Sequence[str],
    variant: Variant,
    *,
    concurrency: int,
    duration_s: float | None,
    requests: int | None,
    max_wait_ms: float = BatchSpec().max_wait_ms,
    repeat: int = 0,
    token_count: Mapping[str, int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> RoundResult:
    """Stops issuing after ``duration_s`` or once ``requests`` texts were issued; texts
    already in flight are waited for and counted. With ``token_count`` (text -> tokens)
    the tokens scored and the padded tokens computed are tallied too."""
    tally = [0, 0, 0, 0]  # tokens, padded tokens, calls, texts in them

    def counted(batch: list[str]) -> list[Finding]:
        if token_count is not None:
            lengths = [token_count[text] for text in batch]
            tally[0] += sum(lengths)
            tally[1] += padded(lengths)
        tally[2] += 1
        tally[3] += len(batch)
        return check(batch)

    registry = CollectorRegistry()
    batcher = None
    if variant.max_batch is not None:
        spec = BatchSpec(max_batch=variant.max_batch, max_wait_ms=max_wait_ms, max_queue=max(1024, concurrency))
        batcher = MicroBatcher(counted, spec, name=variant.monitor, metrics=MonitorMetrics(registry), clock=clock)
        submit: Callable[[list[str]], Awaitable[list[Finding]]] = batcher.submit
    else:

        async def submit(batch: list[str]) -> list[Finding]:
            return counted(batch)

    issued = itertools.count()
    latencies: list[float] = []
    cpu_start, start = cpu_clock(), clock()
    deadline = start + duration_s if duration_s is not None else math.inf
    last_done = start

    async def user() -> None:
        nonlocal last_done
        while True:
            i = next(issued)
            if (requests is not None and i >= requests) or clock() >= deadline:
                return
            sent = clock()
            await submit([texts[i % len(texts)]])
            last_done = clock()
            latencies.append(last_done - sent)
            if batcher is None:
                await asyncio.sleep(0)  # an inline check never yields: let the other users in

    if batcher is not None:
        await batcher.start()
    try:
        await asyncio.gather(*(user() for _ in range(concurrency)))
    finally:
        if batcher is not None:
            await batcher.close()
    batches, batched_texts = tally[2], tally[3]
    if batcher is not None:
        # The batcher's own account, as the gateway's /metrics would show it.
        labels = {"monitor": variant.monitor}
        batches = int(registry.get_sample_value("taxgate_monitor_batch_size_count", labels) or 0)
        batched_texts = int(registry.get_sample_value("taxgate_monitor_batch_size_sum", labels) or 0)
    return RoundResult(
        variant=variant,
        repeat=repeat,
        latencies_s=tuple(latencies),
        wall_s=last_done - start,
        batches=batches,
        batched_texts=batched_texts,
        tokens=tally[0],
        padded_tokens=tally[1],
        cpu_s=cpu_clock() - cpu_start,
    )
