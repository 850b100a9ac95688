"""Plain counters and histograms the engine updates on its hot path.

The engine emits a token for every running sequence on every step; going through
prometheus_client per token (a lock and a bucket search each) would make the
simulator, not the system under test, the bottleneck. These objects take one
update per step for a whole batch (``observe(value, count)``); ``metrics.py``
exports them in Prometheus format when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


class BatchHistogram:
    """A histogram that can record one value for many events at once."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        # One slot per bucket plus +Inf; counts are per bucket, not yet cumulative.
        self._counts = [0] * (len(self.buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        if count <= 0:
            return
        # bisect_left puts a value equal to an upper bound into that bucket (le is <=).
        self._counts[bisect_left(self.buckets, value)] += count
        self.count += count
        self.sum += value * count

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, events <= bound) pairs, ending with (inf, count)."""
        running = 0
        pairs = []
        for bound, n in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += n
            pairs.append((bound, running))
        return pairs


# Bucket bounds copied in spirit from vLLM (vllm/v1/metrics/buckets.py) so dashboards
# built for vLLM show the same resolution.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass
class EngineStats:
    """Everything the engine counts; read by the metrics exporter and by tests."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    # vLLM's finished_reason label values: stop, length, abort.
    finished: Counter[str] = field(default_factory=Counter)
    ttft: BatchHistogram = field(default_factory=lambda: BatchHistogram(TTFT_BUCKETS))
    itl: BatchHistogram = field(default_factory=lambda: BatchHistogram(ITL_BUCKETS))
    tpot: BatchHistogram = field(default_factory=lambda: BatchHistogram(ITL_BUCKETS))
    e2e: BatchHistogram = field(default_factory=lambda: BatchHistogram(REQUEST_LATENCY_BUCKETS))
    queue_time: BatchHistogram = field(default_factory=lambda: BatchHistogram(REQUEST_LATENCY_BUCKETS))
    request_prompt_tokens: BatchHistogram = field(default_factory=lambda: BatchHistogram(TOKEN_BUCKETS))
    request_generation_tokens: BatchHistogram = field(default_factory=lambda: BatchHistogram(TOKEN_BUCKETS))
    iteration_tokens: BatchHistogram = field(default_factory=lambda: BatchHistogram(ITERATION_TOKEN_BUCKETS))

    @property
    def aborted(self) -> int:
        return self.finished["abort"]
