"""When a level's taxes are resolved, and what an extra repeat runs, on hand-made rounds."""

from __future__ import annotations

import pytest

from loadtest.bench.aggregate import cell_stats
from loadtest.bench.options import BenchOptions
from loadtest.bench.precision import Precision, comparisons, extra_repeat, unresolved
from loadtest.bench.samples import Sample
from loadtest.bench.stats import Estimate
from loadtest.bench.tax import tax_row

NAMES = ["direct", "gateway", "pii", "detoxify"]


def round_of(ttft, e2e=0.5, n=8, t0=1000.0):
    return [
        Sample(
            start=t0 + i * e2e,
            status=200,
            ttft_s=ttft,
            e2e_s=e2e,
            itls_s=tuple([(e2e - ttft) / 4] * 4),
            output_tokens=5,
            error=None,
            blocked=False,
        )
        for i in range(n)
    ]


def cell(name, ttfts, users=16):
    return cell_stats(name, users, [round_of(t) for t in ttfts])


@pytest.mark.parametrize(
    ("estimate", "resolved"),
    [
        (Estimate(2.0, -2.9, 6.9, 6), True),  # ±4.9 ms
        (Estimate(2.0, -3.5, 7.5, 6), False),  # ±5.5 ms
        (Estimate(100.0, 91.0, 109.0, 6), True),  # ±9 ms, under 10 % of the tax
        (Estimate(-100.0, -111.0, -89.0, 6), False),  # ±11 ms: over 10 % either sign
        (Estimate(3.0, None, None, 1), False),  # one repeat: no spread known
        (None, True),  # nothing measured: more repeats would not measure it
    ],
)
def test_interval_resolved_by_absolute_or_relative_width(estimate, resolved):
    assert Precision().resolves_ms(estimate) is resolved


def test_comparisons_are_the_headlines():
    assert comparisons(NAMES) == [("gateway", "direct"), ("pii", "gateway"), ("detoxify", "gateway")]
    assert comparisons(["direct", "pii"]) == []  # no bare gateway: nothing the headline compares


def test_a_noisy_set_is_unresolved_and_its_repeat_runs_the_baselines_too():
    steady = [0.100, 0.101, 0.100, 0.101, 0.100, 0.101]
    cells = {
        ("direct", 16): cell("direct", steady),
        ("gateway", 16): cell("gateway", [t + 0.002 for t in steady]),
        ("pii", 16): cell("pii", [t + 0.004 for t in steady]),
        # TTFT tax swinging by +-30 ms from repeat to repeat.
        ("detoxify", 16): cell("detoxify", [0.13, 0.10, 0.16, 0.09, 0.15, 0.11]),
    }
    wide = unresolved(cells, NAMES, 16, Precision())
    assert wide == [("detoxify", "gateway")]
    assert extra_repeat(NAMES, wide) == ["direct", "gateway", "detoxify"]
    assert extra_repeat(NAMES, []) == []


def test_a_side_with_extra_repeats_pairs_only_the_repeats_both_ran():
    base = cell("gateway", [0.100] * 6 + [0.500, 0.500])  # two extra repeats the set did not run
    mine = cell("pii", [0.105] * 6)
    row = tax_row(mine, base)
    assert row.deltas_ms["ttft"]["p50"].n == 6
    assert row.deltas_ms["ttft"]["p50"].low == pytest.approx(5.0)


def test_the_profile_extends_only_where_the_headline_must_resolve(tmp_path):
    options = BenchOptions(out=tmp_path, concurrency=(1, 16, 64), warmup_s=0, max_tokens=32)
    assert [plan.extra > 0 for plan in options.plans] == [True, True, False]
    exact = BenchOptions(out=tmp_path, concurrency=(1, 16), warmup_s=0, max_tokens=32, repeats=4)
    assert [plan.extra for plan in exact.plans] == [0, 0]  # --repeats is an exact count
