"""The headline of a report: one line per monitor set, at the level the machine did not bound.

Pure, over the validated report parts. The level is the highest concurrency that no
scenario marked client-, upstream- or machine-bound: above it the tax is partly the
load generator's or the machine's, not the gateway's. ``gateway-bound`` does not bar a
level (a gateway that fills its core is the gateway's cost, part of the tax), so a set can
be gateway-bound at the headline level: each line names every level at which its scenario
or baseline carries a flag, and the caption says it. If every level is bounded, the lowest
is used (and its flags are shown on every line).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from loadtest.bench import schema
from loadtest.bench.cpu import is_saturated
from loadtest.bench.tax import DIRECT, GATEWAY


def level_summaries(rows: Sequence[schema.ScenarioRow]) -> list[schema.LevelSummary]:
    levels: dict[int, list[str]] = {}
    for row in rows:
        flags = levels.setdefault(row.concurrency, [])
        flags += [f for f in row.flags if f not in flags]
    return [
        schema.LevelSummary(concurrency=level, flags=sorted(flags), saturated=is_saturated(flags))
        for level, flags in sorted(levels.items())
    ]


def headline_level(levels: Sequence[schema.LevelSummary]) -> int | None:
    free = [s.concurrency for s in levels if not s.saturated]
    if free:
        return max(free)
    return min((s.concurrency for s in levels), default=None)


def headline_rows(
    tax: Sequence[schema.TaxRow],
    safety: Sequence[schema.SafetyRow],
    scenarios: Sequence[schema.ScenarioRow],
    level: int | None,
    targets: Collection[str] = (),
) -> list[schema.HeadlineRow]:
    """The bare gateway against direct, then each monitor set against the bare gateway
    (each of ``targets``, endpoints the bench did not start, against direct)."""
    if level is None:
        return []
    by_safety = {s.scenario: s for s in safety}
    cpu = {s.name: s.gateway_cpu_s_per_1k_tokens for s in scenarios if s.concurrency == level}
    flagged = flagged_levels(scenarios)
    rows = []
    for t in tax:
        if t.concurrency != level:
            continue
        wanted = DIRECT if t.scenario == GATEWAY or t.scenario in targets else GATEWAY
        if t.baseline != wanted:
            continue
        s = by_safety.get(t.scenario)
        rows.append(
            schema.HeadlineRow(
                scenario=t.scenario,
                baseline=t.baseline,
                concurrency=level,
                ttft_p50_ms=t.ttft_ms.p50 if t.ttft_ms else None,
                e2e_p50_ms=t.e2e_ms.p50 if t.e2e_ms else None,
                throughput_ratio=t.throughput_ratio,
                gateway_cpu_s_per_1k_tokens=cpu.get(t.scenario),
                cpu_s_per_1k_tokens=t.cpu_s_per_1k_tokens,
                harmful_catch_rate=s.harmful_catch_rate if s else None,
                false_positive_rate=s.false_positive_rate if s else None,
                false_block_rate=s.false_block_rate if s else None,
                false_alter_rate=s.false_alter_rate if s else None,
                false_flag_rate=s.false_flag_rate if s else None,
                flags=t.flags,
                flagged_levels=_merged(flagged.get(t.scenario, {}), flagged.get(t.baseline, {})),
            )
        )
    return rows


def flagged_levels(scenarios: Sequence[schema.ScenarioRow]) -> dict[str, dict[str, list[str]]]:
    """Per scenario, the levels (as "users" strings) at which it carries a flag, and those flags."""
    out: dict[str, dict[str, list[str]]] = {}
    for row in sorted(scenarios, key=lambda r: r.concurrency):
        if row.flags:
            out.setdefault(row.name, {})[str(row.concurrency)] = sorted(row.flags)
    return out


def _merged(*parts: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for part in parts:
        for level, flags in part.items():
            merged[level] = sorted(set(merged.get(level, [])) | set(flags))
    return dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
