"""`taxgate bench monitors`: its load loop, its statistics, its report, and whole runs."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import build_parser
from loadtest.bench import monitorcli
from loadtest.bench.kit import round_plan
from loadtest.bench.monitorload import RoundResult, Variant, padded, run_round, split_encodable
from loadtest.bench.monitorreport import MonitorReport
from loadtest.bench.monitorrun import MonitorBenchOptions
from loadtest.bench.monitorstats import headline, mean_batch, padding_share, variant_stats
from loadtest.bench.options import LevelPlan
from monitors.base import AsyncMonitor, Finding, Monitor
from monitors.registry import MonitorRegistry

ROOT = Path(__file__).resolve().parents[3]
BATCHED, BIG, INLINE = Variant("m", 1), Variant("m", 32), Variant("fast", None)


def result(
    variant: Variant,
    repeat: int,
    latencies: list[float],
    wall_s: float,
    batches: int,
    batched_texts: int,
    tokens: int = 0,
    padded_tokens: int = 0,
    cpu_s: float = 0.0,
) -> RoundResult:
    return RoundResult(variant, repeat, tuple(latencies), wall_s, batches, batched_texts, tokens, padded_tokens, cpu_s)


def test_batch_settings_are_sorted_and_unique():
    assert monitorcli._batches("32,1,8,8") == (1, 8, 32)
    assert monitorcli._batches(" 4 ") == (4,)
    for bad in ("", "0,4", "a,2", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            monitorcli._batches(bad)


def test_variants_are_interleaved_by_the_bench_round_plan():
    names = [BATCHED.name, BIG.name, INLINE.name]
    plan = round_plan(names, (LevelPlan(users=8, repeats=3, requests=0, duration_s=1, stagger_s=0),))
    assert [(repeat, name) for repeat, _, name in plan] == [
        (0, "m batch 1"),
        (0, "m batch 32"),
        (0, "fast inline"),
        (1, "m batch 32"),
        (1, "fast inline"),
        (1, "m batch 1"),
        (2, "fast inline"),
        (2, "m batch 1"),
        (2, "m batch 32"),
    ]


def test_stats_pool_rounds_and_pair_speedups_by_repeat():
    rounds = [
        # unbatched: 10 texts/s then 20 texts/s
        result(BATCHED, 0, [0.1] * 10, 1.0, 10, 10, cpu_s=2.0),
        result(BATCHED, 1, [0.2] * 20, 1.0, 20, 20, cpu_s=1.0),
        # batched: 40 then 60 texts/s, in batches of 10
        result(BIG, 0, [0.05] * 40, 1.0, 4, 40, tokens=300, padded_tokens=400),
        result(BIG, 1, [0.3] * 60, 1.0, 6, 60, tokens=300, padded_tokens=600),
        result(INLINE, 0, [0.001] * 100, 0.5, 100, 100),
    ]
    fast, base, batched = variant_stats(rounds)
    assert fast.variant == INLINE and fast.speedup is None and fast.baseline is None
    assert fast.texts_per_s.value == pytest.approx(200.0) and fast.texts_per_s.low is None
    assert (base.variant, base.texts, base.rounds) == (BATCHED, 30, 2)
    assert base.texts_per_s.value == pytest.approx(15.0)  # pooled: 30 texts in 2 s
    # The bench's Student t over the per-repeat rates 10 and 20: 15 ± 12.706 * 5.
    assert base.texts_per_s.low == pytest.approx(15 - 12.7062 * 5)
    assert base.texts_per_s.high == pytest.approx(15 + 12.7062 * 5)
    assert base.texts_per_cpu_s == pytest.approx(10.0)  # 30 texts in 3 CPU-seconds
    assert batched.texts_per_cpu_s is None  # no CPU time recorded
    assert base.mean_batch == 1.0 and base.speedup is None
    assert batched.mean_batch == 10.0
    assert batched.padding == pytest.approx(0.4)  # 600 of 1000 computed tokens were real
    assert base.padding is None  # no token counts given
    # Centred on the pooled ratio, spread from the paired ratios 4.0 and 3.0.
    assert batched.speedup.value == pytest.approx(50 / 15) and batched.speedup.n == 2
    assert batched.speedup.high - batched.speedup.low == pytest.approx(2 * 12.7062 * 0.5)
    assert batched.baseline == "m batch 1"
    # Percentiles over the pooled latencies: 40 at 50 ms, 60 at 300 ms.
    assert batched.latency_s.p50 == pytest.approx(0.3)
    assert base.latency_s.p50 == pytest.approx(0.2)
    assert [h.variant for h in headline([fast, base, batched])] == [INLINE, BIG]


def test_a_batch_costs_its_longest_text_times_its_size():
    assert padded([10, 50, 20]) == 150
    assert padded([]) == 0
    assert padding_share(80, 150) == pytest.approx(1 - 80 / 150)
    assert padding_share(0, 0) is None
    assert mean_batch(0, 0) is None


def test_texts_with_ids_past_the_vocabulary_are_left_out():
    usable, dropped = split_encodable(["ok", "bad", "empty"], [[2, 5, 3], [2, 9, 3], []], vocab_size=9)
    assert usable == {"ok": 3, "empty": 0}
    assert dropped == ["bad"]


def test_stats_edge_cases():
    assert variant_stats([]) == []
    assert result(BATCHED, 0, [], 0.0, 0, 0).texts_per_s == 0.0
    # A batched variant whose baseline has no round in its repeat: no speed-up interval.
    rows = variant_stats([result(BATCHED, 0, [0.1] * 4, 1.0, 4, 4), result(BIG, 1, [0.1] * 8, 1.0, 1, 8)])
    assert rows[1].speedup.value == pytest.approx(2.0) and rows[1].speedup.n == 0


def _sleepy_check(texts: list[str]) -> list[Finding]:
    time.sleep(0.005)  # long enough for the other users' texts to queue behind this batch
    return [Finding(score=0.0) for _ in texts]


async def test_run_round_counts_texts_and_reads_batch_sizes_from_the_histogram():
    texts = [f"text {i}" for i in range(5)]
    unbatched = await run_round(_sleepy_check, texts, Variant("s", 1), concurrency=8, duration_s=None, requests=40)
    batched = await run_round(
        _sleepy_check,
        texts,
        Variant("s", 8),
        concurrency=8,
        duration_s=None,
        requests=40,
        repeat=1,
        token_count={text: 10 + i for i, text in enumerate(texts)},
    )
    assert unbatched.texts == 40 and unbatched.batches == 40 and unbatched.batched_texts == 40
    assert batched.texts == 40 and batched.batched_texts == 40 and batched.repeat == 1
    assert batched.batches < 20  # batches of several texts
    assert batched.tokens == 8 * sum(range(10, 15))  # each of the 5 texts sent 8 times
    assert batched.padded_tokens > batched.tokens
    assert unbatched.padded_tokens == unbatched.tokens == 0  # no token counts given
    assert all(latency > 0 for latency in batched.latencies_s)


async def test_an_inline_round_calls_the_check_once_per_text_and_every_user_gets_a_turn():
    seen: list[str] = []

    def check(texts: list[str]) -> list[Finding]:
        seen.extend(texts)
        return [Finding(score=0.0) for _ in texts]

    done = await run_round(check, ["a", "b", "c"], Variant("i", None), concurrency=3, duration_s=None, requests=9)
    assert done.texts == 9 and done.batches == 9 and done.batched_texts == 9
    assert seen == ["a", "b", "c"] * 3  # the users took turns: one text each, in order


async def test_run_round_stops_issuing_at_the_deadline():
    done = await run_round(_sleepy_check, ["x"], Variant("s", 4), concurrency=4, duration_s=0.05, requests=None)
    assert 0 < done.texts < 200
    assert done.wall_s > 0.03  # the last text issued before the deadline finished after it, or nearly


def test_options_name_the_flag_that_is_wrong():
    for bad, match in [
        ({"concurrency": 0}, "--concurrency"),
        ({"repeats": 0}, "--repeats"),
        ({"batches": ()}, "--batches"),
        ({"model": "huge"}, "--model"),
        ({"duration_s": None}, "--duration and --requests"),
        ({"ci_method": "z"}, "--ci"),
        ({"monitors": ()}, "--monitors"),
    ]:
        with pytest.raises(ValueError, match=match):
            MonitorBenchOptions(**bad)


class SleepyMonitor(Monitor):
    """CPU-bound stand-in: each call costs a fixed few ms, whatever the batch size."""

    def check(self, texts):
        return _sleepy_check(list(texts))


class InlineMonitor(Monitor):
    @property
    def inline(self) -> bool:
        return True

    def check(self, texts):
        return [Finding(score=float("x" in t)) for t in texts]


class RemoteMonitor(AsyncMonitor):
    async def check(self, texts):
        return [Finding(score=0.0) for _ in texts]


def _run(argv: list[str], registry: MonitorRegistry | None = None) -> int:
    args = build_parser().parse_args(["bench", "monitors", *argv])
    return monitorcli.run(args, registry=registry)


def test_a_small_run_writes_a_report_that_opens_with_the_headline(tmp_path, capsys):
    registry = MonitorRegistry({"sleepy": lambda spec: SleepyMonitor(), "quick": lambda spec: InlineMonitor()})
    out = tmp_path / "report"
    code = _run(
        [
            "--monitors",
            "sleepy,quick",
            "--batches",
            "1,8",
            "--concurrency",
            "8",
            "--requests",
            "32",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
        registry,
    )
    assert code == 0
    report = MonitorReport.model_validate(json.loads((out / "report.json").read_text()))
    rows = {(v.monitor, v.max_batch): v for v in report.variants}
    assert set(rows) == {("quick", None), ("sleepy", 1), ("sleepy", 8)}
    assert all(v.texts == 64 and v.rounds == 2 for v in rows.values())
    assert rows[("sleepy", 1)].mean_batch == 1.0 and rows[("sleepy", 1)].speedup is None
    assert rows[("sleepy", 8)].mean_batch > 1.0  # the batcher did gather concurrent texts
    assert rows[("sleepy", 8)].speedup.n == 2 and rows[("sleepy", 8)].baseline == "sleepy batch 1"
    assert rows[("quick", None)].mean_batch == 1.0
    assert all(v.latency_ms.p50 > 0 and v.latency_ms.n == 64 for v in rows.values())
    assert len(report.rounds) == 6 and {r.repeat for r in report.rounds} == {0, 1}
    assert [h.monitor for h in report.headline] == ["quick", "sleepy"]
    assert report.meta.torch is None and report.meta.concurrency == 8
    assert any("quick: inline" in note for note in report.meta.notes)
    markdown = (out / "report.md").read_text()
    assert markdown.index("## Headline") < markdown.index("## Run") < markdown.index("## Per monitor")
    assert "| sleepy | 8 |" in markdown
    assert "<h2>Headline" in (out / "report.html").read_text()
    terminal = capsys.readouterr().out
    assert terminal.index("Headline") < terminal.index("Per monitor and setting")
    assert str(out / "report.html") in terminal.replace("\n", "")


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    def err() -> str:
        return " ".join(capsys.readouterr().err.split())  # unwrapped

    assert _run(["--concurrency", "0", "--out", str(tmp_path)]) == 2
    assert "--concurrency must be positive" in err()
    assert _run(["--monitors", "nope", "--out", str(tmp_path)], MonitorRegistry({})) == 2
    assert "unknown monitor 'nope'" in err()
    assert _run(["--model-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "holds no detoxify.ckpt" in err()
    remote = MonitorRegistry({"remote": lambda spec: RemoteMonitor()})
    assert _run(["--monitors", "remote", "--out", str(tmp_path)], remote) == 2
    assert "'remote' has an async check" in err()
    assert not (tmp_path / "report.json").exists()


def test_plain_bench_flags_still_parse_without_the_subcommand():
    args = build_parser().parse_args(["bench", "--concurrency", "1,4", "--requests", "3"])
    assert args.bench_command is None and args.concurrency == (1, 4) and args.requests_per_user == 3


def _cli(*argv: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


def test_help_documents_every_flag():
    done = _cli("bench", "monitors", "--help", timeout_s=60)
    assert done.returncode == 0, done.stderr
    parser = argparse.ArgumentParser()
    monitorcli.configure_parser(parser)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert {"--monitors", "--batches", "--concurrency", "--model", "--out"} <= flags
    for flag in flags:
        assert flag in done.stdout
    assert "monitors" in _cli("bench", "--help", timeout_s=60).stdout


def test_tiny_detoxify_end_to_end(tmp_path):
    out = tmp_path / "report"
    done = _cli(
        "bench",
        "monitors",
        "--model",
        "tiny",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--batches",
        "1,4",
        "--concurrency",
        "4",
        "--requests",
        "16",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = MonitorReport.model_validate(json.loads((out / "report.json").read_text()))
    assert [(v.max_batch, v.texts) for v in report.variants] == [(1, 32), (4, 32)]
    assert report.variants[0].mean_batch == 1.0 and report.variants[1].mean_batch > 1.0
    assert report.variants[1].padding is not None and 0 <= report.variants[1].padding < 1
    assert report.meta.model.startswith("32x2 BERT, local tiny")
    assert report.meta.tokens_mean > 0 and report.meta.torch
    assert not math.isnan(report.variants[1].speedup.value)
    assert "Headline" in done.stdout and "speed-up" in done.stdout
