"""The report: schema-valid JSON from a synthetic run, Markdown/HTML/plots, terminal summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from loadtest.bench import cpu
from loadtest.bench.aggregate import cell_stats
from loadtest.bench.kit import machine_description
from loadtest.bench.matrix import load_matrix
from loadtest.bench.options import BenchOptions
from loadtest.bench.plots import PLOT_FILES, write_plots
from loadtest.bench.promscrape import Timing
from loadtest.bench.report import REPORT_FILES, build_report, write_report
from loadtest.bench.runner import BenchResult
from loadtest.bench.safety import SafetyResult
from loadtest.bench.samples import Sample
from loadtest.bench.scenarios import build_scenarios
from loadtest.bench.schema import Report, report_json_schema
from loadtest.bench.tables import FEW, delta, headline_table, scenario_table, tax_table
from loadtest.bench.terminal import print_summary

LEVELS = (1, 4)


def closed_loop(ttft: float, e2e: float, n: int = 6, tokens: int = 8) -> list[Sample]:
    gap = (e2e - ttft) / (tokens - 1)
    return [Sample(100.0 + i * e2e, 200, ttft, e2e, (gap,) * (tokens - 1), tokens, user=0) for i in range(n)]


# Cores per part in every round; at 4 users the machine (2 cores here) is saturated.
def round_cpu(name: str, level: int) -> dict:
    cores = {cpu.LOAD_GENERATOR: 0.1, cpu.UPSTREAM: 0.1, cpu.MACHINE: 0.5 if level == 1 else 1.9}
    if name != "direct":
        cores[cpu.GATEWAY] = {"gateway": 0.008, "pii": 0.016}.get(name, 0.012)
    return cores


def synthetic_result(tmp_path: Path) -> BenchResult:
    matrix = load_matrix()
    scenarios = build_scenarios(matrix, ["pii", "detoxify"])
    extra = {"direct": 0.0, "gateway": 0.001, "pii": 0.5, "detoxify": 0.03}
    cells = {}
    for scenario in scenarios:
        for level in LEVELS:
            rounds = [closed_loop(0.1 + extra[scenario.name] + r * 0.002, 1.0 + level * 0.01) for r in range(2)]
            cells[(scenario.name, level)] = cell_stats(
                scenario.name, level, rounds, [round_cpu(scenario.name, level)] * 2
            )
    pii = SafetyResult("pii")
    for label, verdict, count in [
        ("benign", "passed", 9),
        ("benign", "altered", 1),
        ("pii", "altered", 5),
        ("toxic", "passed", 5),
        ("toxic", "error", 1),
    ]:
        for _ in range(count):
            pii.add(label, verdict)
    options = BenchOptions(
        out=tmp_path, concurrency=LEVELS, repeats=2, warmup_s=1, max_tokens=8, command="taxgate bench --quick"
    )
    return BenchResult(
        options=options,
        scenarios=scenarios,
        cells=cells,
        safety={"pii": pii},
        timings={"pii": [Timing("taxgate_monitor_duration_seconds", {"monitor": "pii", "stage": "input"}, 10, 0.25)]},
        model="sim-llama-8b",
        upstream_kind="simulator",
        wall_s=12.0,
        started_at=datetime(2026, 1, 2, tzinfo=UTC),
        phases_s={"rounds": 10.0},
    )


@pytest.fixture
def report(tmp_path) -> Report:
    return build_report(synthetic_result(tmp_path), {**machine_description(), "cpu_count": 2})


def test_report_json_matches_its_json_schema(report, tmp_path):
    # jsonschema: an independent check that the exported schema describes the file.
    jsonschema = pytest.importorskip("jsonschema")
    paths = write_report(report, tmp_path, [])
    assert [p.name for p in paths] == list(REPORT_FILES)
    data = orjson.loads((tmp_path / "report.json").read_bytes())
    jsonschema.validate(data, report_json_schema())
    assert Report.model_validate(data) == report


def test_report_has_every_scenario_at_every_level(report):
    cells = {(s.name, s.concurrency) for s in report.scenarios}
    assert cells == {(n, c) for n in ("direct", "gateway", "pii", "detoxify") for c in LEVELS}
    pii = next(s for s in report.scenarios if s.name == "pii" and s.concurrency == 1)
    assert pii.ttft_ms.p50 == pytest.approx(601.0)
    assert pii.rounds == 2 and pii.requests == 12 and pii.errors == 0


def test_tax_rows_against_both_baselines(report):
    pairs = {(t.scenario, t.baseline, t.concurrency) for t in report.tax}
    assert ("gateway", "direct", 1) in pairs
    assert ("pii", "gateway", 4) in pairs
    assert ("gateway", "gateway", 1) not in pairs
    row = next(t for t in report.tax if (t.scenario, t.baseline, t.concurrency) == ("pii", "direct", 1))
    assert row.ttft_ms.p50.value == pytest.approx(500.0)
    # Both repeats add exactly 500 ms: a zero-width interval.
    assert row.ttft_ms.p50.ci_low == pytest.approx(500.0)
    assert row.throughput_ratio.value == pytest.approx(1.0, abs=0.01)


def test_safety_rows_and_notes(report):
    (pii,) = report.safety
    assert pii.catch_rate == {"pii": 1.0, "toxic": 0.0}
    assert pii.false_alter_rate == pytest.approx(0.1)
    assert pii.false_block_rate == 0.0
    assert pii.errors == 1 and pii.n == 21
    assert pii.harmful_catch_rate == pytest.approx(0.5)
    assert any("random weights" in note for note in report.meta.notes)
    assert report.meta.machine.cpu_count


def test_markdown_and_html_show_the_tables_and_embed_plots(report, tmp_path):
    plots = write_plots(report, tmp_path)
    assert [p.name for p in plots] == list(PLOT_FILES)
    assert all(p.stat().st_size > 5000 for p in plots)
    write_report(report, tmp_path, plots)
    md = (tmp_path / "report.md").read_text()
    assert "## Safety tax vs direct" in md and "## Safety tax vs gateway" in md
    assert "| pii | 1 |" in md and "![safety_vs_tax](safety_vs_tax.png)" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<table>" in html and "monitor_duration" in html


def test_delta_formats():
    from loadtest.bench.schema import Interval

    assert delta(None) == "-"
    assert delta(Interval(value=5, ci_low=None, ci_high=None, n=1)) == "+5.0"
    full = Interval(value=5, ci_low=3, ci_high=8, n=3)
    assert delta(full) == "+5.0 (+3.0..+8.0)"
    assert delta(full, compact=True) == "+5.0 ±3.0"


def test_terminal_summary_prints_the_tax_table(report, tmp_path):
    console = Console(record=True, width=200)
    print_summary(report, console, tmp_path)
    text = console.export_text()
    assert "Safety tax vs direct" in text and "Safety effect" in text
    assert "Headline at 1 user" in text and "4 users: machine-bound" in text
    assert str(tmp_path / "report.html") in text
    assert len(tax_table(report, "direct").rows) == 3 * len(LEVELS)


def test_gateway_cpu_per_1k_tokens_and_its_tax(report):
    # 8 tokens per 1.01 s cycle: 7.92 tok/s; 0.016 cores of pii: ~2.02 CPU-s per 1k tokens.
    pii = next(s for s in report.scenarios if s.name == "pii" and s.concurrency == 1)
    assert pii.gateway_cpu_s_per_1k_tokens == pytest.approx(0.016 / (8 / 1.01) * 1000)
    direct = next(s for s in report.scenarios if s.name == "direct" and s.concurrency == 1)
    assert direct.gateway_cpu_s_per_1k_tokens is None
    over = next(t for t in report.tax if (t.scenario, t.baseline, t.concurrency) == ("pii", "gateway", 1))
    assert over.cpu_s_per_1k_tokens.value == pytest.approx(0.008 / (8 / 1.01) * 1000)
    total = next(t for t in report.tax if (t.scenario, t.baseline, t.concurrency) == ("gateway", "direct", 1))
    assert total.cpu_s_per_1k_tokens.value == pytest.approx(0.008 / (8 / 1.01) * 1000)


def test_saturated_levels_are_flagged_and_the_headline_avoids_them(report):
    levels = {lv.concurrency: lv for lv in report.levels}
    assert levels[4].flags == ["machine-bound"] and levels[4].saturated
    assert not levels[1].saturated
    assert report.headline_concurrency == 1
    rows = {(h.scenario, h.baseline) for h in report.headline}
    assert rows == {("gateway", "direct"), ("pii", "gateway"), ("detoxify", "gateway")}
    pii = next(h for h in report.headline if h.scenario == "pii")
    assert pii.ttft_p50_ms.value == pytest.approx(499.0)
    assert pii.harmful_catch_rate == pytest.approx(0.5) and pii.false_block_rate == 0.0
    tax4 = next(t for t in report.tax if t.concurrency == 4 and t.scenario == "pii")
    assert "machine-bound" in tax4.flags
    table = headline_table(report)
    assert table.title == "Headline at 1 user" and len(table.rows) == 3


def test_p99_over_few_samples_is_marked_everywhere(report):
    pii = next(s for s in report.scenarios if s.name == "pii")
    assert pii.ttft_ms.n == 12 and not pii.ttft_ms.p99_supported
    assert pii.itl_ms.n == 84 and not pii.itl_ms.p99_supported
    row = next(t for t in report.tax if t.scenario == "pii")
    assert row.ttft_ms.n_min == 12 and not row.ttft_ms.p99_supported
    for table in (scenario_table(report), tax_table(report, "direct")):
        p99 = table.headers.index("TTFT p99")
        assert all(r[p99].endswith(FEW) for r in table.rows)
        assert FEW in table.caption
        p50 = table.headers.index("TTFT p50")
        assert not any(r[p50].endswith(FEW) for r in table.rows)


def test_html_and_markdown_open_with_the_headline(report, tmp_path):
    plots = write_plots(report, tmp_path)
    write_report(report, tmp_path, plots)
    html = (tmp_path / "report.html").read_text()
    assert html.index("id='headline'") < html.index("Latency and throughput")
    assert html.index("safety_vs_tax") < html.index("Latency and throughput")
    assert "Saturation" in html and "machine-bound" in html
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Headline at 1 user") < md.index("## Latency and throughput")
    assert "gw CPU s/1k tok" in md


def test_the_headline_counts_false_positives_of_any_action_and_names_flagged_levels(tmp_path):
    result = synthetic_result(tmp_path)
    # An annotate-only set that flags every item: it blocks nothing, yet every benign item is
    # a false positive (the headline once read 0 % for it).
    detoxify = SafetyResult("detoxify")
    for label, source in [("benign", "docs"), ("benign", "forum"), ("harmful_request", "redteam"), ("toxic", "forum")]:
        for _ in range(5):
            detoxify.add(label, "flagged", source)
    result.safety["detoxify"] = detoxify
    report = build_report(result, {**machine_description(), "cpu_count": 2})
    row = next(h for h in report.headline if h.scenario == "detoxify")
    assert row.false_block_rate == 0.0 and row.false_positive_rate == 1.0
    table = headline_table(report)
    line = next(r for r in table.rows if r[0] == "detoxify")
    assert line[8] == "100.0% (flag 100.0%)"
    # Level 4 is machine-bound for every scenario: each line says so in the caption.
    assert row.flagged_levels == {"4": ["machine-bound"]}
    assert "detoxify vs gateway: 4 users machine-bound" in table.caption
    assert "no client-, upstream- or machine-bound flag" in table.caption
    safety = {s.scenario: s for s in report.safety}
    assert [s.source for s in safety["detoxify"].sources] == ["docs", "forum", "redteam"]
    assert safety["detoxify"].catch_rate == {"harmful_request": 1.0, "toxic": 1.0}


def test_a_rate_with_nothing_to_measure_reads_n_a_and_why(report):
    from loadtest.bench.tables import safety_table

    (pii,) = report.safety
    pii.counts["jailbreak"] = {"error": 3}
    pii.catch_rate["jailbreak"] = None
    text = " ".join(cell for row in safety_table(report).rows for cell in row)
    assert "n/a (all 3 jailbreak items errored)" in text
    no_benign = pii.model_copy(
        update={
            "counts": {k: v for k, v in pii.counts.items() if k != "benign"},
            **dict.fromkeys(("false_positive_rate", "false_block_rate", "false_alter_rate", "false_flag_rate")),
        }
    )
    report.safety[0] = no_benign
    row = safety_table(report).rows[0]
    assert row[-6:-2] == ("n/a (no benign item)",) * 4
