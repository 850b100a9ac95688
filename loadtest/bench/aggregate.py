"""From request samples to per-round and per-cell (scenario x concurrency) statistics.

Pure. Latency percentiles are over successful requests (ITL over every gap of every
such request). Throughput is taken over the steady part of a closed-loop round:
from the first request sent to the last request sent (Locust stops starting new
requests at --run-time, then lets the in-flight ones finish; counting the drain,
when fewer users are active, would understate throughput at high concurrency).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loadtest.bench.samples import Sample
from loadtest.bench.stats import Percentiles, rate, summarize, tpot

METRICS = ("ttft", "itl", "e2e", "tpot")


@dataclass(frozen=True, slots=True)
class Latencies:
    """p50/p95/p99 per metric, in seconds; a metric is None when nothing measured it."""

    ttft: Percentiles | None
    itl: Percentiles | None
    e2e: Percentiles | None
    tpot: Percentiles | None

    def metric(self, name: str) -> Percentiles | None:
        return getattr(self, name)


@dataclass(frozen=True, slots=True)
class Throughput:
    output_tokens_per_s: float
    requests_per_s: float
    window_s: float


@dataclass(frozen=True, slots=True)
class RoundStats:
    """One Locust round of one scenario at one concurrency."""

    requests: int
    errors: int
    blocked: int
    latencies: Latencies
    throughput: Throughput
    error_examples: tuple[str, ...] = ()


def latencies(samples: Iterable[Sample]) -> Latencies:
    ttfts: list[float] = []
    itls: list[float] = []
    e2es: list[float] = []
    tpots: list[float] = []
    for s in samples:
        if not s.ok:
            continue
        ttfts.append(s.ttft_s)
        itls.extend(s.itls_s)
        if s.e2e_s is not None:
            e2es.append(s.e2e_s)
            per_token = tpot(s.e2e_s, s.ttft_s, s.output_tokens)
            if per_token is not None:
                tpots.append(per_token)
    return Latencies(summarize(ttfts), summarize(itls), summarize(e2es), summarize(tpots))


def throughput(samples: Sequence[Sample]) -> Throughput:
    """Completions and output tokens per second over the steady window of one round."""
    done = [s for s in samples if s.ok]
    if not done:
        return Throughput(0.0, 0.0, 0.0)
    begin = min(s.start for s in samples)
    end = max(s.start for s in samples)
    in_window = [s for s in done if s.end <= end]
    if end - begin <= 0 or not in_window:
        # Too few requests for a steady window (e.g. one long request): use the whole span.
        end = max(s.end for s in done)
        in_window = done
    window = end - begin
    tokens = sum(s.output_tokens for s in in_window)
    return Throughput(rate(tokens, window), rate(len(in_window), window), window)


def round_stats(samples: Sequence[Sample]) -> RoundStats:
    errors = [s for s in samples if s.error is not None]
    examples = tuple(dict.fromkeys(s.error for s in errors))[:3]
    return RoundStats(
        requests=sum(1 for s in samples if s.ok),
        errors=len(errors),
        blocked=sum(1 for s in samples if s.blocked and s.error is None),
        latencies=latencies(samples),
        throughput=throughput(samples),
        error_examples=examples,
    )


@dataclass(frozen=True, slots=True)
class CellStats:
    """A scenario at one concurrency over all its repeats.

    ``pooled`` latencies are over all requests of all repeats (more samples, steadier
    tails); ``rounds`` keep each repeat apart for the paired tax intervals.
    """

    scenario: str
    concurrency: int
    rounds: tuple[RoundStats, ...]
    pooled: Latencies
    throughput: Throughput

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    @property
    def blocked(self) -> int:
        return sum(r.blocked for r in self.rounds)


def cell_stats(scenario: str, concurrency: int, rounds: Sequence[Sequence[Sample]]) -> CellStats:
    """Pool the repeats of one cell; throughput is total tokens over total steady time."""
    per_round = tuple(round_stats(samples) for samples in rounds)
    window = sum(r.throughput.window_s for r in per_round)
    tokens = sum(r.throughput.output_tokens_per_s * r.throughput.window_s for r in per_round)
    completed = sum(r.throughput.requests_per_s * r.throughput.window_s for r in per_round)
    return CellStats(
        scenario=scenario,
        concurrency=concurrency,
        rounds=per_round,
        pooled=latencies(s for samples in rounds for s in samples),
        throughput=Throughput(rate(tokens, window), rate(completed, window), window),
    )
