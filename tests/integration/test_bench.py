"""`taxgate bench` end to end: real processes (simulator, gateways, Locust) on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from loadtest.bench.plots import PLOT_FILES
from loadtest.bench.report import REPORT_FILES
from loadtest.bench.schema import Report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_bench(out: Path, *flags: str, timeout_s: float = 600) -> Report:
    """Run the real CLI (as `taxgate bench`, through the gateway's dispatcher)."""
    argv = [sys.executable, "-m", "gateway", "bench", "--out", str(out),
            "--cache-dir", str(out / "cache"), *flags]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"bench failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "Safety tax vs direct" in done.stdout
    assert str(out / "report.html") in done.stdout.replace("\n", "")
    for name in (*REPORT_FILES, *PLOT_FILES[:2]):
        assert (out / name).stat().st_size > 0, name
    return Report.model_validate(orjson.loads((out / "report.json").read_bytes()))


def assert_complete(report: Report, scenarios: list[str], levels: list[int]) -> None:
    cells = {(s.name, s.concurrency): s for s in report.scenarios}
    assert set(cells) == {(n, c) for n in scenarios for c in levels}
    for (name, level), row in cells.items():
        assert row.requests > 0, f"{name}@{level} completed no request"
        assert row.ttft_ms is not None and row.e2e_ms is not None
        assert row.errors == 0, f"{name}@{level}: {row.error_examples}"
    pairs = {(t.scenario, t.baseline, t.concurrency) for t in report.tax}
    for level in levels:
        for name in scenarios[1:]:
            assert (name, "direct", level) in pairs
        for name in scenarios[2:]:
            assert (name, "gateway", level) in pairs


def test_bench_against_the_simulator(tmp_path):
    report = run_bench(tmp_path / "report", "--concurrency", "1,4", "--duration", "2",
                       "--repeats", "1", "--warmup", "1", "--sets", "profanity,pii")
    assert_complete(report, ["direct", "gateway", "profanity", "pii"], [1, 4])
    safety = {s.scenario: s for s in report.safety}
    assert set(safety) == {"profanity", "pii"}
    # Echo mode puts the dataset text in the outputs: the regex monitor must find its PII.
    assert safety["pii"].catch_rate["pii"] > 0.9
    assert safety["profanity"].catch_rate["toxic"] > 0.5
    assert safety["pii"].false_block_rate == 0.0
    assert (tmp_path / "report" / PLOT_FILES[2]).exists()
    assert any(t.metric == "taxgate_monitor_duration_seconds" for t in report.monitor_timings)
    assert report.meta.upstream_kind.startswith("simulator")


def test_bench_against_real_vllm(vllm_server, tmp_path):
    # vLLM on CPU with a tiny random model: few tokens, a small safety sample.
    report = run_bench(tmp_path / "report", "--upstream", vllm_server.base_url,
                       "--concurrency", "1,2", "--duration", "3", "--repeats", "1",
                       "--warmup", "1", "--max-tokens", "8", "--sets", "pii",
                       "--safety-sample", "3", "--safety-max-tokens", "8")
    assert_complete(report, ["direct", "gateway", "pii"], [1, 2])
    assert report.meta.model == vllm_server.model
    assert report.meta.upstream_kind.startswith("external")
    (pii,) = report.safety
    assert pii.n == 12 and pii.errors == 0
