"""The statistics of a bench run: pure functions over numbers, no I/O.

Definitions follow `vllm bench serve`: percentiles use linear interpolation between
closest ranks (numpy's default ``method="linear"``), TPOT is (E2E - TTFT) / (tokens - 1).
Tax = scenario minus baseline for the same metric and percentile, paired by repeat
(rounds are interleaved, so repeat r of both ran within seconds of each other), with
a confidence interval over the paired per-repeat deltas.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES = (50, 95, 99)

# Two-sided 97.5% quantiles of Student's t, df = 1..30 (the usual table). Past 30 a
# Cornish-Fisher expansion around the normal quantile is accurate to ~1e-4.
_T975 = (
    12.7062,
    4.3027,
    3.1824,
    2.7764,
    2.5706,
    2.4469,
    2.3646,
    2.3060,
    2.2622,
    2.2281,
    2.2010,
    2.1788,
    2.1604,
    2.1448,
    2.1314,
    2.1199,
    2.1098,
    2.1009,
    2.0930,
    2.0860,
    2.0796,
    2.0739,
    2.0687,
    2.0639,
    2.0595,
    2.0555,
    2.0518,
    2.0484,
    2.0452,
    2.0423,
)
_Z975 = 1.959964


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), numpy's ``linear`` method. ``values`` must be non-empty."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    return _percentile_sorted(ordered, q)


def _percentile_sorted(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    frac = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * frac


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p95: float
    p99: float

    def get(self, name: str) -> float:
        return getattr(self, name)

    def scaled(self, factor: float) -> Percentiles:
        return Percentiles(self.p50 * factor, self.p95 * factor, self.p99 * factor)

    def as_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


PERCENTILE_NAMES = tuple(f"p{q}" for q in PERCENTILES)


def summarize(values: Sequence[float]) -> Percentiles | None:
    """p50/p95/p99 of ``values``; None when there are none (e.g. every request failed)."""
    if not values:
        return None
    ordered = sorted(values)
    return Percentiles(*(_percentile_sorted(ordered, q) for q in PERCENTILES))


def tpot(e2e_s: float, ttft_s: float, output_tokens: int) -> float | None:
    """Time per output token after the first; undefined for single-token outputs."""
    if output_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (output_tokens - 1)


def rate(count: float, seconds: float) -> float:
    """count / seconds, 0 for an empty window (a round where nothing completed)."""
    return count / seconds if seconds > 0 else 0.0


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % for z = 1.96); (0, 1) when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 % or 100 %,
    which is where catch and false-block rates live.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of an empty sequence")
    return math.fsum(values) / len(values)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (95% two-sided)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean with a 95% interval; ``low``/``high`` are None when n < 2 (no spread known)."""

    value: float
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n}

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (seconds -> ms: 1000)."""
        return Estimate(
            self.value * factor,
            None if self.low is None else self.low * factor,
            None if self.high is None else self.high * factor,
            self.n,
        )


def t_interval(values: Sequence[float]) -> Estimate:
    """Mean and 95% Student-t interval. Right for few repeats (3-10) of a roughly normal delta."""
    m = mean(values)
    n = len(values)
    if n < 2:
        return Estimate(m, None, None, n)
    half = t_quantile_975(n - 1) * stdev(values) / math.sqrt(n)
    return Estimate(m, m - half, m + half, n)


def bootstrap_interval(values: Sequence[float], rng: random.Random, resamples: int = 2000) -> Estimate:
    """Mean and 95% percentile-bootstrap interval; ``rng`` is injected so runs are repeatable.

    Assumes nothing about the shape of the deltas, but with under ~10 repeats the
    interval is too narrow; the t-interval is the default for that reason.
    """
    m = mean(values)
    n = len(values)
    if n < 2:
        return Estimate(m, None, None, n)
    means = sorted(mean(rng.choices(values, k=n)) for _ in range(resamples))
    return Estimate(m, _percentile_sorted(means, 2.5), _percentile_sorted(means, 97.5), n)


def interval(values: Sequence[float], method: str, rng: random.Random) -> Estimate:
    """Dispatch on the configured interval method ("t" or "bootstrap")."""
    if method == "t":
        return t_interval(values)
    if method == "bootstrap":
        return bootstrap_interval(values, rng)
    raise ValueError(f"unknown interval method {method!r}: use 't' or 'bootstrap'")


def paired_deltas(scenario: Sequence[float | None], baseline: Sequence[float | None]) -> list[float]:
    """Per-repeat scenario - baseline, skipping repeats where either side has no value."""
    if len(scenario) != len(baseline):
        raise ValueError(
            f"paired deltas need one value per repeat on both sides, got {len(scenario)} and {len(baseline)}"
        )
    pairs = zip(scenario, baseline, strict=True)
    return [s - b for s, b in pairs if s is not None and b is not None]


def paired_ratios(scenario: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-repeat scenario / baseline, skipping repeats with a zero baseline."""
    if len(scenario) != len(baseline):
        raise ValueError(
            f"paired ratios need one value per repeat on both sides, got {len(scenario)} and {len(baseline)}"
        )
    return [s / b for s, b in zip(scenario, baseline, strict=True) if b > 0]


def pooled_delta(
    rounds: Sequence[Sequence[float]], base_rounds: Sequence[Sequence[float]], q: float, method: str, rng: random.Random
) -> Estimate | None:
    """The tax the bench reports, for benches that keep raw values per round: the ``q``-th
    percentile of every round pooled minus the baseline's, with the width of the interval
    over the per-round paired deltas (round r of both ran back to back). None when either
    side has no value; no interval under two paired rounds."""
    mine = [v for r in rounds for v in r]
    theirs = [v for r in base_rounds for v in r]
    if not mine or not theirs:
        return None
    centre = percentile(mine, q) - percentile(theirs, q)
    per_round = paired_deltas(
        [percentile(r, q) if r else None for r in rounds], [percentile(r, q) if r else None for r in base_rounds]
    )
    if not per_round:
        return Estimate(centre, None, None, 0)
    return recentred(interval(per_round, method, rng), centre)


def recentred(estimate: Estimate, centre: float) -> Estimate:
    """The same interval width around another point estimate.

    The tax reports the difference of pooled percentiles (consistent with the
    scenario tables) and takes only the spread from the per-repeat deltas.
    """
    shift = centre - estimate.value
    if estimate.low is None or estimate.high is None:
        return Estimate(centre, None, None, estimate.n)
    return Estimate(centre, estimate.low + shift, estimate.high + shift, estimate.n)
