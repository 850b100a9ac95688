"""The load-test kit: one percentile and interval for every bench, shared flags, one plan."""

from __future__ import annotations

import random

import orjson
import pytest

from gateway.cli import build_parser
from loadtest.bench import budget, soak
from loadtest.bench.kit import round_plan, simple_levels
from loadtest.bench.stats import percentile, pooled_delta


def test_pooled_delta_is_the_difference_of_pooled_percentiles_with_the_paired_interval():
    rng = random.Random(1)
    mine = [[rng.uniform(0.10, 0.20) for _ in range(50)] for _ in range(4)]
    base = [[rng.uniform(0.05, 0.15) for _ in range(50)] for _ in range(4)]
    est = pooled_delta(mine, base, 95, "t", random.Random(0))
    assert est.value == pytest.approx(percentile(sum(mine, []), 95) - percentile(sum(base, []), 95))
    assert est.n == 4 and est.low < est.value < est.high
    one = pooled_delta(mine[:1], base[:1], 50, "t", random.Random(0))
    assert one.low is None and one.high is None and one.n == 1
    assert pooled_delta([[]], base[:1], 50, "t", random.Random(0)) is None


@pytest.mark.parametrize("name", ["budget", "audit", "soak"])
def test_every_subcommand_takes_the_shared_flags(tmp_path, name):
    args = build_parser().parse_args(
        [
            "bench",
            name,
            "--concurrency",
            "8",
            "--duration",
            "3",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--verbose",
            "--ready-timeout",
            "30",
        ]
    )
    assert args.bench_command == name and args.concurrency == (8,) and args.duration == 3
    assert args.seed == 5 and args.out == tmp_path and args.verbose and args.ready_timeout == 30


def test_budget_and_audit_share_the_repeat_and_interval_flags():
    for name in ("budget", "audit"):
        args = build_parser().parse_args(["bench", name, "--repeats", "4", "--ci", "bootstrap"])
        assert args.repeats == 4 and args.ci_method == "bootstrap"


def test_a_soak_takes_one_level():
    args = build_parser().parse_args(["bench", "soak", "--concurrency", "4,8"])
    with pytest.raises(ValueError, match="one level"):
        soak.options_from_args(args)


def test_budget_rounds_follow_the_bench_round_plan():
    plan = round_plan(list(budget.SCENARIOS), simple_levels((4, 8), 2, 1.5))
    assert len(plan) == 2 * 2 * 3
    first, second = [name for repeat, _, name in plan if repeat == 0], [n for r, _, n in plan if r == 1]
    assert first[:3] == ["direct", "no-budget", "budget"] and second[:3] == ["no-budget", "budget", "direct"]


def test_budget_coverage_with_no_check_counted_is_not_a_number():
    cell = budget.Cell("budget", 4, [budget.Round("budget", 4, 0, [0.1], [0.2], 0, 1.0, 0.0, {})], 40.0)
    assert cell.coverage is None and budget._share(cell.coverage).startswith("n/a")


def test_the_audit_store_run_reports_linear_percentiles(tmp_path, capsys):
    from gateway.cli import main

    code = main(["bench", "audit", "--skip-gateway", "--events", "400", "--out", str(tmp_path)])
    assert code == 0
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    runs = {(r["backend"], r["sync"]): r for r in report["store"]}
    assert set(runs) == {("sqlite", "batch"), ("sqlite", "always")}
    for run in runs.values():
        assert 0 < run["wait_p50_us"] <= run["wait_p99_us"] and run["events_per_s"] > 0
    assert (tmp_path / "report.md").read_text().startswith("# taxgate bench audit report")
    assert "Store alone" in capsys.readouterr().out
