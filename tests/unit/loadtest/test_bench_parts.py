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
from loadtest.bench.procs import ManagedProcess, ProcessGroup, child_env
from loadtest.bench.rounds import RoundSpec, Workload, round_message, round_options
from loadtest.bench.safety import SafetyResult, classify, stratified_sample
from loadtest.bench.traffic import Outcome
from loadtest.harness import ProcessError, free_port


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
    for label, verdict in [
        ("benign", "passed"),
        ("benign", "blocked"),
        ("benign", "error"),
        ("toxic", "flagged"),
        ("toxic", "passed"),
    ]:
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
    timings = {(t.metric, tuple(t.labels.values())): t for t in promscrape.timings_between(before, after)}
    pii = timings[("taxgate_monitor_duration_seconds", ("pii", "input"))]
    assert pii.count == 2 and pii.mean_ms == pytest.approx(3.0)
    assert timings[("taxgate_overhead_seconds", ("holdback",))].mean_ms == pytest.approx(500.0)
    # Series with no new observations are left out.
    assert ("taxgate_stream_holdback_seconds", ()) not in timings


def test_round_message_is_paired_by_repeat_and_read_as_locustfile_options(tmp_path):
    spec = RoundSpec("pii", 16, 2, "http://127.0.0.1:1", 120, requests=48, stagger_s=0.25)
    workload = Workload(model="m", max_tokens=32, dataset=Path("d.jsonl"), seed=5)
    message = round_message(spec, workload, tmp_path / "s.jsonl")
    assert message["prompt_seed"] == 5002  # the same for every scenario in repeat 2
    assert (message["users"], message["requests"], message["host"]) == (16, 48, spec.url)
    options = round_options(message)
    assert (options.max_requests, options.stagger_s, options.max_tokens) == (48, 0.25, 32)
    assert options.samples_out == str(tmp_path / "s.jsonl") and options.dataset == "d.jsonl"
    assert options.itl_events == "none" and options.ignore_eos
    assert spec.key == "r2-c16-pii"


def test_the_plan_sizes_rounds_by_requests_per_level(tmp_path):
    options = BenchOptions(out=tmp_path, concurrency=(1, 16, 64), warmup_s=0, max_tokens=32)
    one, sixteen, many = options.plans
    assert (one.requests, one.repeats, one.stagger_s) == (5, 6, 0.0)
    assert (sixteen.requests, sixteen.repeats) == (48, 6) and sixteen.stagger_s > 0
    assert (many.requests, many.repeats) == (128, 3)
    # At least 30 requests per scenario at 1 user, so its percentiles are more than a few points.
    assert one.requests * one.repeats >= 30
    assert options.rounds_total == 15
    timed = BenchOptions(
        out=tmp_path, concurrency=(4,), warmup_s=0, max_tokens=8, duration_s=3, repeats=2, requests_per_user=9
    )
    (plan,) = timed.plans
    assert (plan.requests, plan.duration_s, plan.repeats) == (0, 3, 2)
    sized = BenchOptions(out=tmp_path, concurrency=(4,), warmup_s=0, max_tokens=8, requests_per_user=9)
    assert sized.plans[0].requests == 36


def test_options_validate_their_ranges(tmp_path):
    base = dict(out=tmp_path, concurrency=(1,), duration_s=1, repeats=1, warmup_s=0, max_tokens=8)
    BenchOptions(**base)
    for bad, match in [
        ({"concurrency": ()}, "concurrency"),
        ({"duration_s": 0}, "duration"),
        ({"repeats": 0}, "repeats"),
        ({"max_tokens": 1}, "max-tokens"),
        ({"ci_method": "z"}, "--ci"),
        ({"requests_per_user": 0}, "requests"),
        ({"profile_name": "huge"}, "profile"),
    ]:
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
        tmp_path / "gw.log",
        f"http://127.0.0.1:{port}/ready",
        f"http://127.0.0.1:{port}",
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
    child = ManagedProcess(
        "simulator",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path / "sim.log",
        f"http://127.0.0.1:{port}/health",
        f"http://127.0.0.1:{port}",
    )
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


def test_library_info_logs_are_off_unless_verbose():
    import logging

    from loadtest.bench.kit import quiet_logs

    try:
        quiet_logs(verbose=False)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        quiet_logs(verbose=True)
        assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    finally:
        logging.getLogger("httpx").setLevel(logging.NOTSET)
