"""Batched histograms and their export under vLLM's metric names."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from loadtest.sim.engine import SimEngine
from loadtest.sim.metrics import SimCollector
from loadtest.sim.stats import BatchHistogram
from loadtest.sim.timing import get_profile


def test_batch_histogram_records_many_events_at_once():
    hist = BatchHistogram([0.1, 1.0])
    hist.observe(0.1, 3)  # on a bound: le is inclusive
    hist.observe(0.5)
    hist.observe(5.0, 2)
    hist.observe(1.0, 0)
    assert hist.cumulative() == [(0.1, 3), (1.0, 4), (float("inf"), 6)]
    assert hist.count == 6
    assert hist.sum == pytest.approx(0.3 + 0.5 + 10.0)


def test_collector_exports_vllm_names_and_labels():
    engine = SimEngine(get_profile("tiny-cpu"), random.Random(0))
    engine.stats.generation_tokens = 42
    engine.stats.finished["abort"] += 2
    engine.stats.ttft.observe(0.05, 4)
    registry = CollectorRegistry()
    registry.register(SimCollector(engine, "sim-x"))
    labels = {"model_name": "sim-x", "engine": "0"}
    assert registry.get_sample_value("vllm:num_requests_running", labels) == 0
    assert registry.get_sample_value("vllm:num_requests_waiting", labels) == 0
    assert registry.get_sample_value("vllm:generation_tokens_total", labels) == 42
    assert registry.get_sample_value("vllm:request_success_total", {**labels, "finished_reason": "abort"}) == 2
    assert registry.get_sample_value("vllm:time_to_first_token_seconds_count", labels) == 4
    assert registry.get_sample_value("vllm:time_to_first_token_seconds_bucket", {**labels, "le": "0.06"}) == 4
    text = generate_latest(registry).decode()
    for name in (
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_sum",
        "vllm:prompt_tokens_total",
        "vllm:request_time_per_output_token_seconds_count",
        "vllm:kv_cache_usage_perc",
    ):
        assert name in text
