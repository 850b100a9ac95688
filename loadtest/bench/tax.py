"""The safety tax: each scenario minus a baseline, per metric and percentile, with intervals.

Pure. Baselines: ``direct`` (the upstream itself: total tax) and ``gateway`` (the
gateway with no monitors: what the monitors alone cost). The point estimate is the
difference of the pooled percentiles; its 95% interval takes its width from the
per-repeat paired deltas (repeat r of both scenarios ran back to back).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.bench.aggregate import METRICS, CellStats
from loadtest.bench.stats import (
    PERCENTILE_NAMES,
    Estimate,
    interval,
    paired_deltas,
    paired_ratios,
    rate,
    recentred,
)

DIRECT = "direct"
GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class TaxRow:
    """``deltas_ms[metric][percentile]``: scenario - baseline in milliseconds."""

    scenario: str
    baseline: str
    concurrency: int
    deltas_ms: dict[str, dict[str, Estimate]]
    throughput_ratio: Estimate
    # Values on the side with fewer, per metric (for the p99 sample-size mark).
    counts: dict[str, int] = field(default_factory=dict)
    # Gateway CPU s per 1,000 output tokens, scenario minus baseline (direct has none: 0).
    cpu_s_per_1k_tokens: Estimate | None = None


def metric_delta(
    cell: CellStats, base: CellStats, metric: str, pct: str, method: str, rng: random.Random
) -> Estimate | None:
    """One metric and percentile, in ms; None when either side measured nothing."""
    pooled, pooled_base = cell.pooled.metric(metric), base.pooled.metric(metric)
    if pooled is None or pooled_base is None:
        return None
    centre = (pooled.get(pct) - pooled_base.get(pct)) * 1000.0
    mine, theirs = paired_rounds(cell, base)
    per_repeat = paired_deltas(
        [_round_value(r.latencies.metric(metric), pct) for r in mine],
        [_round_value(r.latencies.metric(metric), pct) for r in theirs],
    )
    if not per_repeat:
        return Estimate(centre, None, None, 0)
    return recentred(interval([d * 1000.0 for d in per_repeat], method, rng), centre)


def paired_rounds(cell: CellStats, base: CellStats) -> tuple[tuple, tuple]:
    """The repeats both sides ran. Extra repeats (``loadtest.bench.precision``) can give
    one side more: the baselines run in every extra repeat and a set in the first ones
    only, so repeat r of both sides, back to back, is the r-th of each."""
    n = min(len(cell.rounds), len(base.rounds))
    return cell.rounds[:n], base.rounds[:n]


def _round_value(p, pct: str) -> float | None:
    return None if p is None else p.get(pct)


def throughput_ratio(cell: CellStats, base: CellStats, method: str, rng: random.Random) -> Estimate:
    """Output tokens/s of the scenario over the baseline's (1.0 = no throughput lost)."""
    centre = rate(cell.throughput.output_tokens_per_s, base.throughput.output_tokens_per_s)
    mine, theirs = paired_rounds(cell, base)
    per_repeat = paired_ratios(
        [r.throughput.output_tokens_per_s for r in mine],
        [r.throughput.output_tokens_per_s for r in theirs],
    )
    if not per_repeat:
        return Estimate(centre, None, None, 0)
    return recentred(interval(per_repeat, method, rng), centre)


def cpu_delta(cell: CellStats, base: CellStats, method: str, rng: random.Random) -> Estimate | None:
    """Gateway CPU s per 1,000 tokens over the baseline's; None when it was not sampled."""
    mine = cell.gateway_cpu_s_per_1k_tokens
    if mine is None:
        return None
    theirs = 0.0 if base.scenario == DIRECT else base.gateway_cpu_s_per_1k_tokens
    if theirs is None:
        return None
    rounds, base_rounds = paired_rounds(cell, base)
    per_repeat = paired_deltas(
        [r.gateway_cpu_s_per_1k_tokens for r in rounds],
        [0.0 if base.scenario == DIRECT else r.gateway_cpu_s_per_1k_tokens for r in base_rounds],
    )
    if not per_repeat:
        return Estimate(mine - theirs, None, None, 0)
    return recentred(interval(per_repeat, method, rng), mine - theirs)


def tax_row(cell: CellStats, base: CellStats, method: str = "t", rng: random.Random | None = None) -> TaxRow:
    if cell.concurrency != base.concurrency:
        raise ValueError(
            f"tax compares one concurrency: {cell.scenario}@{cell.concurrency} vs {base.scenario}@{base.concurrency}"
        )
    rng = rng if rng is not None else random.Random(0)
    deltas: dict[str, dict[str, Estimate]] = {}
    for metric in METRICS:
        per_pct = {
            pct: est
            for pct in PERCENTILE_NAMES
            if (est := metric_delta(cell, base, metric, pct, method, rng)) is not None
        }
        if per_pct:
            deltas[metric] = per_pct
    return TaxRow(
        scenario=cell.scenario,
        baseline=base.scenario,
        concurrency=cell.concurrency,
        deltas_ms=deltas,
        throughput_ratio=throughput_ratio(cell, base, method, rng),
        counts={m: min(cell.pooled.count(m), base.pooled.count(m)) for m in METRICS},
        cpu_s_per_1k_tokens=cpu_delta(cell, base, method, rng),
    )


def tax_rows(
    cells: Mapping[tuple[str, int], CellStats],
    scenarios: Sequence[str],
    concurrencies: Sequence[int],
    method: str = "t",
    rng: random.Random | None = None,
    targets: Collection[str] = (),
) -> list[TaxRow]:
    """Every scenario against ``direct``, and every monitor set also against ``gateway``.

    A baseline that was not run (e.g. --sets without the gateway) is skipped. ``targets``
    (endpoints the bench did not start) are compared with ``direct`` only: the bench's
    own bare gateway is no baseline for another deployment.
    """
    rng = rng if rng is not None else random.Random(0)
    rows = []
    for concurrency in concurrencies:
        for name in scenarios:
            for baseline in (DIRECT, GATEWAY):
                if name == baseline or (name in (DIRECT, *targets) and baseline == GATEWAY):
                    continue
                base = cells.get((baseline, concurrency))
                cell = cells.get((name, concurrency))
                if base is None or cell is None:
                    continue
                rows.append(tax_row(cell, base, method, rng))
    return rows
