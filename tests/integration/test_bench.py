"""`taxgate bench` end to end: real processes (simulator, gateways, Locust) on loopback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from PIL import Image

from loadtest.bench.plots import PLOT_FILES
from loadtest.bench.report import REPORT_FILES
from loadtest.bench.rounds import LoadGenerator, RoundSpec, Workload, run_round
from loadtest.bench.schema import Report
from loadtest.sim.server import create_sim_app
from loadtest.sim.settings import SimSettings
from tests.servers import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_bench(out: Path, *flags: str, timeout_s: float = 600) -> Report:
    """Run the real CLI (as `taxgate bench`, through the gateway's dispatcher)."""
    argv = [sys.executable, "-m", "gateway", "bench", "--out", str(out), "--cache-dir", str(out / "cache"), *flags]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"bench failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "Safety tax vs direct" in done.stdout and "Headline at" in done.stdout
    assert str(out / "report.html") in done.stdout.replace("\n", "")
    # Quiet by default: no library INFO lines (one per HTTP request) on the terminal.
    assert "HTTP Request:" not in done.stderr and " INFO " not in done.stderr
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


@pytest.fixture(scope="module")
def sim_report(tmp_path_factory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("bench") / "report"
    report = run_bench(
        out, "--concurrency", "1,4", "--requests", "3", "--repeats", "2", "--warmup", "1", "--sets", "profanity,pii"
    )
    return report, out


def test_bench_against_the_simulator(sim_report):
    report, out = sim_report
    assert_complete(report, ["direct", "gateway", "profanity", "pii"], [1, 4])
    one = next(s for s in report.scenarios if s.name == "pii" and s.concurrency == 1)
    assert one.requests == 2 * 3  # request-sized rounds: 3 per user, 2 repeats
    assert [(p.users, p.requests, p.repeats) for p in report.meta.plan] == [(1, 3, 2), (4, 12, 2)]
    safety = {s.scenario: s for s in report.safety}
    assert set(safety) == {"profanity", "pii"}
    # Echo mode puts the dataset text in the outputs: the regex monitor must find its PII.
    assert safety["pii"].catch_rate["pii"] > 0.9
    assert safety["profanity"].catch_rate["toxic"] > 0.5
    assert safety["pii"].false_block_rate == 0.0
    assert (out / PLOT_FILES[2]).exists()
    assert any(t.metric == "taxgate_monitor_duration_seconds" for t in report.monitor_timings)
    assert report.meta.upstream_kind.startswith("simulator")


def test_the_safety_pass_measures_the_monitors_whatever_the_upstream(sim_report, tmp_path):
    # The load goes to an upstream that answers random words: its answers to labelled
    # prompts are not labelled texts, and an input redaction never shows in them. The
    # safety pass runs in front of an echo simulator of its own, so it reports the rates
    # of the echo run, item for item.
    settings = SimSettings(profile="instant", output_mode="random", model="sim-llama-8b", seed=0)
    server = ThreadedServer(create_sim_app(settings)).start()
    try:
        report = run_bench(
            tmp_path / "report",
            "--upstream",
            server.base_url,
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0.5",
            "--sets",
            "profanity,pii",
        )
    finally:
        server.stop()
    echo, other = ({s.scenario: s for s in r.safety} for r in (sim_report[0], report))
    for name in ("profanity", "pii"):
        assert other[name].counts == echo[name].counts, name
        assert other[name].catch_rate == echo[name].catch_rate
        assert other[name].false_positive_rate == echo[name].false_positive_rate
    assert other["pii"].catch_rate["pii"] > 0.9
    assert any("echo mode (not --upstream)" in note for note in report.meta.notes)
    assert report.meta.upstream_kind.startswith("external")


def test_bench_samples_the_cpu_of_its_processes(sim_report):
    report, _ = sim_report
    # A process's CPU time moves in 10 ms ticks, and these rounds last a fraction of a
    # second: one row may see no tick of a process, but the run as a whole must.
    for row in report.scenarios:
        cores = row.cpu_cores
        assert 0 <= cores["load generator"] < 1.5 and 0 <= cores["upstream"] < 1.5
        assert 0 < cores["machine"] <= (report.meta.machine.cpu_count or 1) + 0.2
        if row.name == "direct":
            assert row.gateway_cpu_s_per_1k_tokens is None and "gateway" not in cores
        else:
            # Far less than a second of gateway CPU per token.
            assert 0 <= row.gateway_cpu_s_per_1k_tokens < 1000
    assert sum(row.cpu_cores["load generator"] for row in report.scenarios) > 0
    assert sum(row.cpu_cores["upstream"] for row in report.scenarios) > 0
    # Any gateway spends some CPU per token.
    assert sum(row.gateway_cpu_s_per_1k_tokens for row in report.scenarios if row.name != "direct") > 0
    assert {lv.concurrency for lv in report.levels} == {1, 4}
    assert report.headline_concurrency in (1, 4)
    assert {h.scenario for h in report.headline} == {"gateway", "profanity", "pii"}
    # Few requests per cell: every p99 is marked as not supported by its sample.
    assert not any(s.ttft_ms.p99_supported for s in report.scenarios)


def test_bench_over_the_responses_route(tmp_path):
    # The same interleaved rounds over streamed /v1/responses, as small as a run gets.
    out = tmp_path / "report"
    report = run_bench(
        out,
        "--route",
        "responses",
        "--concurrency",
        "1",
        "--requests",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0.5",
        "--max-tokens",
        "8",
        "--sets",
        "pii",
        "--safety-sample",
        "2",
    )
    assert report.meta.route == "responses"
    assert_complete(report, ["direct", "gateway", "pii"], [1])
    for row in report.scenarios:
        assert row.output_tokens_per_s > 0, row.name
        assert row.itl_ms is not None and row.ttft_ms.p50 > 0
    samples = [
        orjson.loads(line)
        for path in sorted((out / "work" / "samples").iterdir())
        for line in path.read_bytes().splitlines()
    ]
    # Output tokens from the final Response's usage: ignore_eos makes every answer 8 long.
    assert len(samples) == 3 * 2 and {s["output_tokens"] for s in samples} == {8}
    (pii,) = report.safety
    assert pii.errors == 0 and pii.n > 0
    # Echo mode: the PII items come back redacted through the Responses API too.
    assert pii.catch_rate["pii"] > 0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "headless Chromium is needed to check the HTML report: `make setup-tools` installs Debian's chromium"
        )
    return found


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_html_report_renders_its_headline_and_plots_in_chromium(sim_report, tmp_path):
    _, out = sim_report
    page = (out / "report.html").as_uri()
    dom = headless(tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="headline">' in dom.stdout and "Headline at" in dom.stdout
    assert dom.stdout.index("Headline at") < dom.stdout.index("Latency and throughput")
    assert dom.stdout.count("data:image/png;base64,") == len(PLOT_FILES)
    shot = tmp_path / "report.png"
    done = headless(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars", page)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=rgb.width * rgb.height)
        total = rgb.width * rgb.height
    # The top of the page: headline table (black on white) and the safety-vs-tax plot
    # just below it (coloured points): not blank, and some colour that no table has.
    ink = sum(n for n, (r, g, b) in colors if max(r, g, b) < 160)
    colour = sum(n for n, (r, g, b) in colors if max(r, g, b) - min(r, g, b) > 80)
    assert ink > 0.002 * total, "the screenshot is blank"
    assert colour > 50, "no plot rendered near the top of the report"


def test_bench_against_real_vllm(vllm_server, tmp_path):
    # vLLM on CPU with a tiny random model: few tokens, a small safety sample.
    report = run_bench(
        tmp_path / "report",
        "--upstream",
        vllm_server.base_url,
        "--concurrency",
        "1,2",
        "--duration",
        "3",
        "--repeats",
        "1",
        "--warmup",
        "1",
        "--max-tokens",
        "8",
        "--sets",
        "pii",
        "--safety-sample",
        "3",
        "--safety-max-tokens",
        "8",
    )
    assert_complete(report, ["direct", "gateway", "pii"], [1, 2])
    assert report.meta.model == vllm_server.model
    assert report.meta.upstream_kind.startswith("external")
    (pii,) = report.safety
    assert pii.n == 12 and pii.errors == 0
    # The safety pass ran in front of an echo simulator, not vLLM: the pii items are caught.
    assert pii.catch_rate["pii"] == 1.0


def test_locustfile_by_hand_stops_after_max_requests(tmp_path):
    # The locustfile as users run it (`locust -f`), not through the bench's driver. Answers
    # take ~0.2 s, so neither user can take the whole quota within the other's 0.1 s stagger.
    settings = SimSettings(profile="llama-8b-h100", output_mode="echo", model="sim", seed=0)
    server = ThreadedServer(create_sim_app(settings)).start()
    try:
        samples = tmp_path / "samples.jsonl"
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--host",
            server.base_url,
            "-u",
            "2",
            "-r",
            "100",
            "--run-time",
            "120s",
            "--max-tokens",
            "4",
            "--model",
            "sim",
            "--max-requests",
            "6",
            "--stagger-s",
            "0.1",
            "--samples-out",
            str(samples),
        ]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [orjson.loads(line) for line in samples.read_bytes().splitlines()]
    assert len(lines) == 6  # it ended on the quota, long before --run-time
    assert {line["user"] for line in lines} == {0, 1}
    assert all(line["error"] is None and line["output_tokens"] == 4 for line in lines)


def test_load_generator_runs_timed_and_sized_rounds_in_one_process(tmp_path):
    settings = SimSettings(profile="instant", output_mode="echo", model="sim", seed=0)
    server = ThreadedServer(create_sim_app(settings)).start()
    workload = Workload(model="sim", max_tokens=4, stop_timeout_s=10)
    try:
        with LoadGenerator(tmp_path / "locust.log") as generator:
            pid = generator.pid
            timed = RoundSpec("direct", 2, 0, server.base_url, duration_s=1)
            started = time.monotonic()
            samples = run_round(timed, workload, tmp_path, generator)
            took = time.monotonic() - started
            sized = RoundSpec("direct", 3, 1, server.base_url, duration_s=60, requests=7, stagger_s=0.05)
            again = run_round(sized, workload, tmp_path, generator)
            assert generator.pid == pid  # the same process served both rounds
    finally:
        server.stop()
    assert 1.0 <= took < 8.0  # ran for its second, then drained (no 60 s ceiling)
    assert len(samples) > 2 and {s.user for s in samples} == {0, 1}
    assert all(s.ok for s in samples + again)
    # Exactly the requests asked for, shared by the users (a user staggered last may find
    # none left on an instant upstream).
    users = {s.user for s in again}
    assert len(again) == 7 and users <= {0, 1, 2} and len(users) >= 2
    assert generator.proc.poll() == 0  # stopped cleanly at the end


def test_extra_repeats_run_while_an_interval_is_too_wide(tmp_path):
    # A target no interval reaches: every comparison stays wide, so the level gets all of
    # the profile's extra repeats at 1 user (3), the baselines and the set alike.
    out = tmp_path / "report"
    report = run_bench(
        out,
        "--concurrency",
        "1",
        "--requests",
        "2",
        "--warmup",
        "0.5",
        "--max-tokens",
        "8",
        "--sets",
        "pii",
        "--no-safety",
        "--target-ms",
        "0",
        "--target-relative",
        "0",
    )
    assert {s.name: s.rounds for s in report.scenarios} == {"direct": 9, "gateway": 9, "pii": 9}
    assert any(note.startswith("1 user: 3 extra repeat(s)") for note in report.meta.notes)
    assert any(
        note.startswith("1 user: after all 3 extra repeats still too wide: gateway vs direct")
        for note in report.meta.notes
    )
    pii = next(t for t in report.tax if t.scenario == "pii" and t.baseline == "gateway")
    assert pii.ttft_ms.p50.n == 9  # every extra repeat paired


def test_the_classifier_set_calls_the_simulators_classify(tmp_path):
    # The served-guard set against the simulator's /classify: batched calls, in the report.
    out = tmp_path / "report"
    report = run_bench(
        out,
        "--concurrency",
        "4",
        "--requests",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0.5",
        "--max-tokens",
        "16",
        "--sets",
        "classifier",
        "--safety-sample",
        "2",
    )
    assert_complete(report, ["direct", "gateway", "classifier"], [4])
    batches = [
        t for t in report.monitor_timings if t.scenario == "classifier" and t.metric == "taxgate_monitor_batch_size"
    ]
    assert batches and batches[0].count > 0 and batches[0].mean_ms >= 1.0  # texts per call
    assert any("classifier served by the simulator" in note for note in report.meta.notes)
    (classifier,) = report.safety
    assert classifier.errors == 0 and classifier.n > 0
