"""Round aggregation and the tax on hand-made samples with known answers."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from loadtest.bench.aggregate import cell_stats, round_stats, throughput
from loadtest.bench.samples import Sample
from loadtest.bench.tax import tax_row, tax_rows


def sample(start, ttft, e2e, tokens=5, itl=None, error=None, blocked=False):
    gaps = tuple(itl) if itl is not None else tuple([(e2e - ttft) / (tokens - 1)] * (tokens - 1))
    return Sample(
        start=start, status=200, ttft_s=ttft, e2e_s=e2e, itls_s=gaps, output_tokens=tokens, error=error, blocked=blocked
    )


def closed_loop(ttft, e2e, n=5, tokens=5, t0=1000.0):
    """One user sending back to back: request i starts when i-1 ends."""
    return [sample(t0 + i * e2e, ttft, e2e, tokens) for i in range(n)]


def test_round_stats_counts_and_percentiles():
    samples = closed_loop(0.1, 0.5) + [
        sample(1000.0, None, None, 0, itl=(), error="HTTP 502"),
        sample(1000.1, None, 0.05, 0, itl=(), blocked=True),
    ]
    stats = round_stats(samples)
    assert (stats.requests, stats.errors, stats.blocked) == (5, 1, 1)
    assert stats.latencies.ttft.p50 == pytest.approx(0.1)
    assert stats.latencies.e2e.p99 == pytest.approx(0.5)
    assert stats.latencies.itl.p50 == pytest.approx(0.1)
    assert stats.latencies.tpot.p50 == pytest.approx(0.1)
    assert stats.error_examples == ("HTTP 502",)


def test_closed_loop_throughput_is_exact():
    # 5 back-to-back requests of 0.5 s with 5 tokens: 2 req/s and 10 tok/s.
    tp = throughput(closed_loop(0.1, 0.5))
    assert tp.requests_per_s == pytest.approx(2.0)
    assert tp.output_tokens_per_s == pytest.approx(10.0)
    assert tp.window_s == pytest.approx(2.0)


def test_throughput_of_a_single_request_uses_its_span():
    tp = throughput([sample(10.0, 0.1, 0.5)])
    assert tp.requests_per_s == pytest.approx(2.0)


def test_throughput_of_a_round_that_failed_is_zero():
    assert throughput([sample(1.0, None, None, 0, itl=(), error="boom")]).requests_per_s == 0.0


def test_cell_pools_repeats():
    cell = cell_stats("gateway", 1, [closed_loop(0.1, 0.5), closed_loop(0.3, 0.5)])
    assert cell.requests == 10
    assert cell.pooled.ttft.p50 == pytest.approx(0.2)
    assert cell.throughput.requests_per_s == pytest.approx(2.0)
    assert len(cell.rounds) == 2


def test_tax_row_on_known_data():
    # Repeat deltas of TTFT: +10 ms and +30 ms -> pooled difference 20 ms, t-interval
    # half width 12.7062 * sd(10, 30)=14.142 / sqrt(2) = 127.06 ms.
    base = cell_stats("direct", 4, [closed_loop(0.100, 0.5), closed_loop(0.100, 0.5)])
    cell = cell_stats("gateway", 4, [closed_loop(0.110, 0.5), closed_loop(0.130, 0.5)])
    row = tax_row(cell, base)
    ttft = row.deltas_ms["ttft"]["p50"]
    assert ttft.value == pytest.approx(20.0)
    assert ttft.high - ttft.value == pytest.approx(127.062, abs=0.01)
    assert ttft.n == 2
    assert row.deltas_ms["e2e"]["p99"].value == pytest.approx(0.0, abs=1e-9)
    assert row.throughput_ratio.value == pytest.approx(1.0)
    assert (row.scenario, row.baseline, row.concurrency) == ("gateway", "direct", 4)


def test_tax_row_refuses_mismatched_concurrency():
    a = cell_stats("direct", 1, [closed_loop(0.1, 0.5)])
    b = cell_stats("gateway", 4, [closed_loop(0.1, 0.5)])
    with pytest.raises(ValueError, match="one concurrency"):
        tax_row(b, a)


def test_tax_rows_pair_each_scenario_with_both_baselines():
    cells = {
        (name, c): cell_stats(name, c, [closed_loop(0.1, 0.5)]) for name in ("direct", "gateway", "pii") for c in (1, 8)
    }
    rows = tax_rows(cells, ["direct", "gateway", "pii"], [1, 8], rng=random.Random(0))
    pairs = {(r.scenario, r.baseline, r.concurrency) for r in rows}
    assert pairs == {
        ("gateway", "direct", 1),
        ("pii", "direct", 1),
        ("pii", "gateway", 1),
        ("gateway", "direct", 8),
        ("pii", "direct", 8),
        ("pii", "gateway", 8),
    }


def test_tax_skips_metrics_nobody_measured():
    failed = [sample(1.0, None, None, 0, itl=(), error="boom")]
    base = cell_stats("direct", 1, [closed_loop(0.1, 0.5)])
    cell = cell_stats("gateway", 1, [failed])
    row = tax_row(cell, base)
    assert row.deltas_ms == {}
    assert row.throughput_ratio.value == 0.0


def test_throughput_from_each_users_cycles():
    # Two users, 1 s per request, 5 tokens each: 10 tok/s and 2 req/s whatever the offset.
    # Counting completions inside [first start, last start] would give 3 in 2.5 s here.
    a = [replace(s, user=0) for s in closed_loop(0.1, 1.0, n=3)]
    b = [replace(s, user=1, start=s.start + 0.5) for s in closed_loop(0.1, 1.0, n=3)]
    tp = throughput(a + b)
    assert tp.output_tokens_per_s == pytest.approx(10.0)
    assert tp.requests_per_s == pytest.approx(2.0)
    # A blocked or failed request is a cycle that delivered nothing.
    c = [replace(s, user=0) for s in closed_loop(0.1, 1.0, n=3)]
    c[0] = replace(c[0], blocked=True)
    assert throughput(c).output_tokens_per_s == pytest.approx(2.5)
