"""The bench statistics on known data: percentiles, TPOT, intervals, paired deltas."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.bench import stats


def test_percentile_matches_numpy_linear_on_known_data():
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    # rank = 3 * 0.95 = 2.85 -> 3 + 0.85 * (4 - 3)
    assert stats.percentile(values, 95) == pytest.approx(3.85)


def test_percentile_of_one_value_is_that_value():
    assert stats.percentile([7.0], 99) == 7.0


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(0, 100),
)
def test_percentile_agrees_with_numpy(values, q):
    expected = float(np.percentile(values, q, method="linear"))
    assert stats.percentile(values, q) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError, match="empty"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        stats.percentile([1.0], 101)


def test_summarize_gives_p50_p95_p99_or_none():
    summary = stats.summarize(list(range(101)))
    assert summary == stats.Percentiles(50.0, 95.0, 99.0)
    assert stats.summarize([]) is None
    assert summary.scaled(1000).p99 == 99000.0


def test_tpot_is_per_token_after_the_first():
    assert stats.tpot(e2e_s=1.1, ttft_s=0.1, output_tokens=11) == pytest.approx(0.1)
    assert stats.tpot(e2e_s=1.0, ttft_s=0.1, output_tokens=1) is None


def test_rate_of_empty_window_is_zero():
    assert stats.rate(10, 2.0) == 5.0
    assert stats.rate(10, 0.0) == 0.0


def test_t_quantile_table_and_expansion():
    assert stats.t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert stats.t_quantile_975(4) == pytest.approx(2.7764, abs=1e-4)
    # Past the table: the expansion is close to the true quantile (2.0003 at df=60).
    assert stats.t_quantile_975(60) == pytest.approx(2.0003, abs=2e-4)
    assert stats.t_quantile_975(10_000) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError):
        stats.t_quantile_975(0)


def test_t_quantile_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 29, 30, 31, 45, 100, 500):
        assert stats.t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-4)


def test_t_interval_on_known_data():
    # mean 2, sd 1, n 3: half width = 4.3027 * 1 / sqrt(3)
    est = stats.t_interval([1.0, 2.0, 3.0])
    half = 4.3027 / math.sqrt(3)
    assert est.value == 2.0
    assert est.low == pytest.approx(2.0 - half, abs=1e-4)
    assert est.high == pytest.approx(2.0 + half, abs=1e-4)
    assert est.n == 3


def test_interval_of_one_repeat_has_no_bounds():
    est = stats.t_interval([5.0])
    assert (est.value, est.low, est.high, est.n) == (5.0, None, None, 1)
    assert stats.bootstrap_interval([5.0], random.Random(1)).low is None


def test_bootstrap_interval_is_repeatable_with_a_seeded_rng_and_brackets_the_mean():
    data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    a = stats.bootstrap_interval(data, random.Random(7))
    b = stats.bootstrap_interval(data, random.Random(7))
    assert a == b
    assert a.low < 3.5 < a.high
    assert 1.0 <= a.low and a.high <= 6.0


def test_interval_dispatch_names_an_unknown_method():
    with pytest.raises(ValueError, match="'t' or 'bootstrap'"):
        stats.interval([1.0, 2.0], "jackknife", random.Random(0))


def test_paired_deltas_skip_missing_repeats_and_check_lengths():
    assert stats.paired_deltas([3.0, None, 5.0], [1.0, 1.0, None]) == [2.0]
    with pytest.raises(ValueError, match="one value per repeat"):
        stats.paired_deltas([1.0], [1.0, 2.0])


def test_paired_ratios_skip_zero_baselines():
    assert stats.paired_ratios([2.0, 3.0], [4.0, 0.0]) == [0.5]


def test_recentred_keeps_the_width():
    est = stats.recentred(stats.Estimate(2.0, 1.0, 4.0, 3), 10.0)
    assert (est.value, est.low, est.high) == (10.0, 9.0, 12.0)
    assert stats.recentred(stats.Estimate(2.0, None, None, 1), 3.0).low is None
