"""Smaller bench parts: safety verdicts, /metrics parsing, the Locust command, child processes."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import GatewayMetrics
from loadtest.bench import promscrape
from loadtest.bench.options import BenchOptions
from loadtest.bench.procs import ManagedProcess, ProcessError, ProcessGroup, child_env, free_port
from loadtest.bench.rounds import RoundSpec, Workload, locust_command
from loadtest.bench.safety import SafetyResult, classify, stratified_sample
from loadtest.bench.traffic import Outcome


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (Outcome(400, error_code="content_blocked", error="HTTP 400: blocked"), "blocked"),
        (Outcome(200, text="I can't", finish_reason="content_filter"), "blocked"),
        (Outcome(200, text="mail [REDACTED:EMAIL] now", finish_reason="stop"), "altered"),
        (Outcome(200, text="hello", finish_reason="stop", flags="detoxify"), "flagged"),
        (Outcome(200, text="hello", finish_reason="stop"), "passed"),
        (Outcome(400, error_code="invalid_request", error="HTTP 400: bad"), "error"),
        (Outcome(502, error="HTTP 502: upstream"), "error"),
        (Outcome(0, error="ReadError"), "error"),
    ],
)
def test_classify(outcome, verdict):
    assert classify(outcome) == verdict


def test_safety_rates_leave_errors_out():
    result = SafetyResult("x")
    for label, verdict in [("benign", "passed"), ("benign", "blocked"), ("benign", "error"),
                           ("toxic", "flagged"), ("toxic", "passed")]:
        result.add(label, verdict)
    assert result.share("benign", ("blocked",)) == 0.5
    assert result.catch_rates() == {"toxic": 0.5}
    assert result.share("pii", ("blocked",)) is None
    assert result.harmful_catch_rate() == 0.5
    assert (result.n, result.errors) == (5, 1)


def test_stratified_sample_takes_each_label_and_is_repeatable():
    items = [(f"b{i}", "benign") for i in range(50)] + [(f"t{i}", "toxic") for i in range(3)]
    sample = stratified_sample(items, 10, random.Random(1))
    assert sum(1 for _, label in sample if label == "benign") == 10
    assert sum(1 for _, label in sample if label == "toxic") == 3
    assert sample == stratified_sample(items, 10, random.Random(1))


def test_metrics_difference_gives_means_over_the_interval():
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    metrics.monitors.duration.labels("pii", "input").observe(0.010)
    before = promscrape.parse(generate_latest(registry).decode())
    metrics.monitors.duration.labels("pii", "input").observe(0.002)
    metrics.monitors.duration.labels("pii", "input").observe(0.004)
    metrics.overhead.labels("holdback").observe(0.5)
    after = promscrape.parse(generate_latest(registry).decode())
    timings = {(t.metric, tuple(t.labels.values())): t
               for t in promscrape.timings_between(before, after)}
    pii = timings[("taxgate_monitor_duration_seconds", ("pii", "input"))]
    assert pii.count == 2 and pii.mean_ms == pytest.approx(3.0)
    assert timings[("taxgate_overhead_seconds", ("holdback",))].mean_ms == pytest.approx(500.0)
    # Series with no new observations are left out.
    assert ("taxgate_stream_holdback_seconds", ()) not in timings


def test_locust_command_is_headless_and_paired_by_repeat(tmp_path):
    spec = RoundSpec("pii", 16, 2, "http://127.0.0.1:1", 3)
    workload = Workload(model="m", max_tokens=32, dataset=Path("d.jsonl"), seed=5)
    argv = locust_command(spec, workload, tmp_path / "s.jsonl")
    joined = " ".join(argv)
    assert "--headless" in argv and "--users 16" in joined and "--run-time 3s" in joined
    assert "--prompt-seed 5002" in joined  # the same for every scenario in repeat 2
    assert "--samples-out " + str(tmp_path / "s.jsonl") in joined
    assert "--dataset d.jsonl" in joined and "--exit-code-on-error 0" in joined
    assert spec.key == "r2-c16-pii"


def test_options_validate_their_ranges(tmp_path):
    base = dict(out=tmp_path, concurrency=(1,), duration_s=1, repeats=1, warmup_s=0, max_tokens=8)
    BenchOptions(**base)
    for bad, match in [({"concurrency": ()}, "concurrency"), ({"duration_s": 0}, "duration"),
                       ({"repeats": 0}, "repeats"), ({"max_tokens": 1}, "max-tokens"),
                       ({"ci_method": "z"}, "--ci")]:
        with pytest.raises(ValueError, match=match):
            BenchOptions(**{**base, **bad})


def test_children_do_not_inherit_taxgate_settings(monkeypatch):
    monkeypatch.setenv("TAXGATE_PORT", "1")
    env = child_env()
    assert "TAXGATE_PORT" not in env and env["PYTHONUNBUFFERED"] == "1"


def test_a_child_that_dies_is_named_with_its_log_tail(tmp_path):
    port = free_port()
    child = ManagedProcess(
        "gateway for scenario 'pii'",
        [sys.executable, "-c", "import sys; print('bad config: monitors.0.name'); sys.exit(2)"],
        tmp_path / "gw.log", f"http://127.0.0.1:{port}/ready", f"http://127.0.0.1:{port}",
    )
    with ProcessGroup() as group:
        group.add(child)
        group.start_all()
        with pytest.raises(ProcessError) as caught:
            group.wait_ready(timeout_s=20, poll_s=0.05)
    message = str(caught.value)
    assert "gateway for scenario 'pii' exited with status 2" in message
    assert "bad config: monitors.0.name" in message


def test_a_child_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    port = free_port()
    child = ManagedProcess("simulator", [sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "sim.log", f"http://127.0.0.1:{port}/health",
                           f"http://127.0.0.1:{port}")
    with pytest.raises(ProcessError, match="simulator was not ready"):
        with ProcessGroup() as group:
            group.add(child)
            group.start_all()
            group.wait_ready(timeout_s=0.3, poll_s=0.05)
    assert child.proc.poll() is not None  # stopped on the way out


def test_local_model_cache_is_keyed_by_the_builder_and_reused(tmp_path):
    from loadtest.bench.localmodel import builder_version, local_detoxify

    target = tmp_path / f"detoxify-tiny-{builder_version()}"
    (target / "hf-config").mkdir(parents=True)
    (target / "COMPLETE").write_text("done")
    checkpoint, config_dir = local_detoxify("tiny", tmp_path, tmp_path / "logs")
    assert (checkpoint, config_dir) == (target / "detoxify.ckpt", target / "hf-config")
    with pytest.raises(ValueError, match="tiny or bert-base"):
        local_detoxify("huge", tmp_path, tmp_path / "logs")
