"""From request samples to per-round and per-cell (scenario x concurrency) statistics.

Pure. Latency percentiles are over successful requests (ITL over every gap of every
such request). Throughput is taken over the steady part of a closed-loop round:
from the first request sent to the last request sent (Locust stops starting new
requests at --run-time, then lets the in-flight ones finish; counting the drain,
when fewer users are active, would understate throughput at high concurrency).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.bench.cpu import GATEWAY
from loadtest.bench.samples import Sample
from loadtest.bench.stats import Percentiles, median, rate, summarize, tpot

METRICS = ("ttft", "itl", "e2e", "tpot")


@dataclass(frozen=True, slots=True)
class Latencies:
    """p50/p95/p99 per metric, in seconds; a metric is None when nothing measured it."""

    ttft: Percentiles | None
    itl: Percentiles | None
    e2e: Percentiles | None
    tpot: Percentiles | None
    # Values each metric's percentiles were taken over (requests; gaps for ITL).
    counts: Mapping[str, int] = field(default_factory=dict)

    def metric(self, name: str) -> Percentiles | None:
        return getattr(self, name)

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)


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
    # Mean cores per part (cpu.LOAD_GENERATOR, UPSTREAM, GATEWAY, MACHINE) over the
    # steady window; a part that was not sampled is absent or None.
    cpu: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def gateway_cpu_s_per_1k_tokens(self) -> float | None:
        """Gateway CPU seconds per 1,000 output tokens in this round (None: no gateway)."""
        cores = self.cpu.get(GATEWAY)
        tokens_per_s = self.throughput.output_tokens_per_s
        if cores is None or tokens_per_s <= 0:
            return None
        return cores / tokens_per_s * 1000.0


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
    counts = {"ttft": len(ttfts), "itl": len(itls), "e2e": len(e2es), "tpot": len(tpots)}
    return Latencies(summarize(ttfts), summarize(itls), summarize(e2es), summarize(tpots), counts)


def steady_window(samples: Sequence[Sample]) -> tuple[float, float, list[Sample]]:
    """``(begin, end, completed requests inside)`` of a round's steady part (epoch seconds).

    From the first request sent to the last one sent; a round too short for that (e.g.
    one long request) uses its whole span. The CPU columns use the same window.
    """
    done = [s for s in samples if s.ok]
    if not done:
        return 0.0, 0.0, []
    begin = min(s.start for s in samples)
    end = max(s.start for s in samples)
    in_window = [s for s in done if s.end <= end]
    if end - begin <= 0 or not in_window:
        end = max(s.end for s in done)
        in_window = done
    return begin, end, in_window


def throughput(samples: Sequence[Sample]) -> Throughput:
    """Completions and output tokens per second of one closed-loop round.

    With user ids, from each user's cycles (one request's start to the same user's
    next start): users x tokens per cycle / mean cycle. Every user is busy through
    every complete cycle, so this is the steady rate, and it does not jump by a whole
    wave of requests with where the round's window happens to end, as counting the
    requests completed inside a window does when all users started together.
    Without user ids (files from other tools) it falls back to that window count.
    """
    cycles = _cycles(samples)
    if cycles:
        users = len({s.user for s in samples})
        total_s = sum(c for c, _, _ in cycles)
        tokens = sum(t for _, t, _ in cycles)
        completed = sum(ok for _, _, ok in cycles)
        begin, end, _ = steady_window(samples)
        per_cycle_s = total_s / len(cycles)
        return Throughput(
            users * tokens / len(cycles) / per_cycle_s,
            users * completed / len(cycles) / per_cycle_s,
            end - begin if end > begin else total_s / users,
        )
    begin, end, in_window = steady_window(samples)
    if not in_window:
        return Throughput(0.0, 0.0, 0.0)
    window = end - begin
    tokens = sum(s.output_tokens for s in in_window)
    return Throughput(rate(tokens, window), rate(len(in_window), window), window)


def _cycles(samples: Sequence[Sample]) -> list[tuple[float, int, int]]:
    """``(seconds to the user's next request, output tokens, 1 if ok)`` per complete cycle."""
    if not samples or any(s.user < 0 for s in samples):
        return []
    by_user: dict[int, list[Sample]] = {}
    for s in samples:
        by_user.setdefault(s.user, []).append(s)
    cycles = []
    for mine in by_user.values():
        mine.sort(key=lambda s: s.start)
        for this, after in itertools.pairwise(mine):
            tokens = this.output_tokens if this.ok else 0
            cycles.append((after.start - this.start, tokens, int(this.ok)))
    return [c for c in cycles if c[0] > 0]


def round_stats(samples: Sequence[Sample], cpu: Mapping[str, float | None] | None = None) -> RoundStats:
    errors = [s for s in samples if s.error is not None]
    examples = tuple(dict.fromkeys(s.error for s in errors))[:3]
    return RoundStats(
        requests=sum(1 for s in samples if s.ok),
        errors=len(errors),
        blocked=sum(1 for s in samples if s.blocked and s.error is None),
        latencies=latencies(samples),
        throughput=throughput(samples),
        error_examples=examples,
        cpu=dict(cpu or {}),
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

    def cores(self, part: str) -> float | None:
        """Median over the rounds of the mean cores ``part`` used; None if never sampled."""
        values = [v for r in self.rounds if (v := r.cpu.get(part)) is not None]
        return median(values) if values else None

    @property
    def gateway_cpu_s_per_1k_tokens(self) -> float | None:
        """All rounds' gateway CPU seconds over all their output tokens, per 1,000."""
        cpu_s = tokens = 0.0
        for r in self.rounds:
            cores = r.cpu.get(GATEWAY)
            if cores is None:
                continue
            cpu_s += cores * r.throughput.window_s
            tokens += r.throughput.output_tokens_per_s * r.throughput.window_s
        return cpu_s / tokens * 1000.0 if tokens > 0 else None


def cell_stats(
    scenario: str,
    concurrency: int,
    rounds: Sequence[Sequence[Sample]],
    cpu: Sequence[Mapping[str, float | None]] | None = None,
) -> CellStats:
    """Pool the repeats of one cell; throughput is total tokens over total steady time.

    ``cpu`` holds each round's cores per part, in the order of ``rounds``.
    """
    cpu = list(cpu) if cpu is not None else [{} for _ in rounds]
    if len(cpu) != len(rounds):
        raise ValueError(f"{len(rounds)} rounds but CPU for {len(cpu)}")
    per_round = tuple(round_stats(samples, c) for samples, c in zip(rounds, cpu, strict=True))
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
