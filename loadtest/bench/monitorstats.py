"""The statistics of ``taxgate bench monitors``: pure, over the rounds, with the bench's intervals.

Per variant (a monitor at one ``max_batch``, or inline) all repeats are pooled:
throughput is all texts / all wall time, with a 95% interval over the per-repeat rates;
latency percentiles over every text. The speed-up of a batched variant is its
throughput over the same monitor's smallest ``max_batch``, paired by repeat (rounds are
interleaved, so repeat r of both ran seconds apart), as the main bench pairs its
throughput ratios.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.bench.monitorload import RoundResult, Variant
from loadtest.bench.stats import Estimate, Percentiles, interval, paired_ratios, rate, recentred, summarize


@dataclass(frozen=True)
class VariantStats:
    variant: Variant
    rounds: int
    texts: int
    texts_per_s: Estimate  # pooled, with the interval over the per-repeat rates
    texts_per_cpu_s: float | None  # per CPU-second of this process: less sensitive to CPU theft
    latency_s: Percentiles | None
    mean_batch: float | None
    padding: float | None  # share of the computed tokens that were padding
    speedup: Estimate | None  # over the monitor's baseline variant; None for the baseline itself
    baseline: str | None  # the variant the speed-up is over


def mean_batch(batched_texts: float, batches: float) -> float | None:
    return batched_texts / batches if batches else None


def padding_share(tokens: int, padded_tokens: int) -> float | None:
    return 1 - tokens / padded_tokens if padded_tokens else None


def baselines(variants: Sequence[Variant]) -> dict[str, Variant]:
    """Per monitor, the variant speed-ups are taken over: its smallest max_batch."""
    batched: dict[str, Variant] = {}
    for v in sorted(v for v in variants if v.max_batch is not None):
        batched.setdefault(v.monitor, v)
    return batched


def _pooled(rounds: Sequence[RoundResult]) -> float:
    return rate(sum(r.texts for r in rounds), sum(r.wall_s for r in rounds))


def _estimate(centre: float, values: list[float], method: str, rng: random.Random) -> Estimate:
    if not values:
        return Estimate(centre, None, None, 0)
    return recentred(interval(values, method, rng), centre)


def variant_stats(
    results: Sequence[RoundResult], method: str = "t", rng: random.Random | None = None
) -> list[VariantStats]:
    """One row per variant, by monitor then max_batch (inline first)."""
    rng = rng or random.Random(0)
    groups: dict[Variant, list[RoundResult]] = {}
    for result in sorted(results, key=lambda r: r.repeat):
        groups.setdefault(result.variant, []).append(result)
    base_of = baselines(list(groups))
    rows = []
    for variant in sorted(groups, key=lambda v: (v.monitor, v.max_batch or 0)):
        rounds = groups[variant]
        latencies = [x for r in rounds for x in r.latencies_s]
        pooled = _pooled(rounds)
        cpu = sum(r.cpu_s for r in rounds)
        base = base_of.get(variant.monitor)
        speedup = None
        if base is not None and base != variant:
            base_rounds = {r.repeat: r for r in groups[base]}
            paired = [r for r in rounds if r.repeat in base_rounds]
            speedup = _estimate(
                rate(pooled, _pooled(groups[base])),
                paired_ratios([r.texts_per_s for r in paired], [base_rounds[r.repeat].texts_per_s for r in paired]),
                method,
                rng,
            )
        rows.append(
            VariantStats(
                variant=variant,
                rounds=len(rounds),
                texts=len(latencies),
                texts_per_s=_estimate(pooled, [r.texts_per_s for r in rounds], method, rng),
                texts_per_cpu_s=sum(r.texts for r in rounds) / cpu if cpu > 0 else None,
                latency_s=summarize(latencies),
                mean_batch=mean_batch(sum(r.batched_texts for r in rounds), sum(r.batches for r in rounds)),
                padding=padding_share(sum(r.tokens for r in rounds), sum(r.padded_tokens for r in rounds)),
                speedup=speedup,
                baseline=base.name if speedup is not None and base is not None else None,
            )
        )
    return rows


def headline(rows: Sequence[VariantStats]) -> list[VariantStats]:
    """Per monitor, its fastest variant (pooled texts/s): what to configure."""
    best: dict[str, VariantStats] = {}
    for row in rows:
        if row.variant.monitor not in best or row.texts_per_s.value > best[row.variant.monitor].texts_per_s.value:
            best[row.variant.monitor] = row
    return list(best.values())
