"""Whether a level's taxes are resolved, and which scenarios an extra repeat must run.

Pure. The headline compares every monitor set with the bare gateway and the bare
gateway with the upstream (``direct``). A comparison is resolved when its TTFT and E2E
p50 tax intervals are at most ``half_width_ms`` wide on each side, or ``relative`` of
the tax (a large tax needs no finer grain), and its throughput-ratio interval at most
``ratio_half_width``. A level whose planned repeats leave some comparison unresolved
gets extra repeats, one at a time: the two baselines always run in them, a set only
while its own comparison is unresolved, so every pair of rounds compared ran back to
back (``tax.paired_rounds``) and a resolved comparison's data no longer changes.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from loadtest.bench.aggregate import CellStats
from loadtest.bench.stats import Estimate
from loadtest.bench.tax import DIRECT, GATEWAY, tax_row


@dataclass(frozen=True)
class Precision:
    half_width_ms: float = 5.0
    relative: float = 0.10
    ratio_half_width: float = 0.05
    metrics: tuple[str, ...] = ("ttft", "e2e")

    def resolves_ms(self, estimate: Estimate | None) -> bool:
        if estimate is None or estimate.low is None or estimate.high is None:
            return estimate is None  # nothing measured is no reason to run more
        half = (estimate.high - estimate.low) / 2
        return half <= max(self.half_width_ms, self.relative * abs(estimate.value))

    def resolves_ratio(self, estimate: Estimate) -> bool:
        if estimate.low is None or estimate.high is None:
            return False
        return (estimate.high - estimate.low) / 2 <= self.ratio_half_width


def comparisons(names: Sequence[str], targets: Collection[str] = ()) -> list[tuple[str, str]]:
    """(scenario, baseline) pairs the headline shows, among the scenarios that ran
    (``targets``, endpoints the bench did not start, against ``direct``)."""
    pairs = []
    if GATEWAY in names and DIRECT in names:
        pairs.append((GATEWAY, DIRECT))
    if GATEWAY in names:
        pairs += [(name, GATEWAY) for name in names if name not in (DIRECT, GATEWAY, *targets)]
    if DIRECT in names:
        pairs += [(name, DIRECT) for name in names if name in targets]
    return pairs


def unresolved(
    cells: Mapping[tuple[str, int], CellStats],
    names: Sequence[str],
    users: int,
    precision: Precision,
    method: str = "t",
    targets: Collection[str] = (),
) -> list[tuple[str, str]]:
    """The comparisons at ``users`` whose intervals are still too wide."""
    wide = []
    for name, baseline in comparisons(names, targets):
        cell, base = cells.get((name, users)), cells.get((baseline, users))
        if cell is None or base is None:
            continue
        row = tax_row(cell, base, method, random.Random(0))
        resolved = precision.resolves_ratio(row.throughput_ratio) and all(
            precision.resolves_ms(row.deltas_ms.get(metric, {}).get("p50")) for metric in precision.metrics
        )
        if not resolved:
            wide.append((name, baseline))
    return wide


def extra_repeat(names: Sequence[str], wide: Sequence[tuple[str, str]]) -> list[str]:
    """The scenarios the next extra repeat runs, in ``names`` order; none when all resolved."""
    if not wide:
        return []
    members = {name for pair in wide for name in pair} | ({DIRECT, GATEWAY} & set(names))
    return [name for name in names if name in members]
