"""Exports the engine's state and stats under vLLM's metric names, at scrape time.

Names, label names and bucket bounds follow vLLM's Prometheus stat logger
(``vllm/v1/metrics/loggers.py``), so dashboards, alert rules and the load-test
kit read the simulator exactly as they read vLLM.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from loadtest.sim.engine import SimEngine
from loadtest.sim.stats import BatchHistogram

LABELS = ("model_name", "engine")
FINISH_REASONS = ("stop", "length", "abort")


class SimCollector(Collector):
    """Register on a ``CollectorRegistry``; reads ``engine`` whenever scraped."""

    def __init__(self, engine: SimEngine, model_name: str) -> None:
        self._engine = engine
        # vLLM labels every series with the engine index; one engine here.
        self._labels = [model_name, "0"]

    def collect(self) -> Iterator[Metric]:
        engine, stats, labels = self._engine, self._engine.stats, self._labels
        yield self._gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", engine.num_running
        )
        yield self._gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", engine.num_waiting
        )
        yield self._gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            engine.num_running / engine.profile.max_num_seqs,
        )
        yield self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens)
        yield self._counter("vllm:generation_tokens", "Number of generation tokens processed.", stats.generation_tokens)
        yield self._counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", 0)
        success = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.", labels=[*LABELS, "finished_reason"]
        )
        for reason in FINISH_REASONS:
            success.add_metric([*labels, reason], stats.finished[reason])
        yield success
        for name, doc, hist in (
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", stats.ttft),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", stats.itl),
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                stats.tpot,
            ),
            ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", stats.e2e),
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                stats.queue_time,
            ),
            ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", stats.request_prompt_tokens),
            (
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
                stats.request_generation_tokens,
            ),
            ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", stats.iteration_tokens),
        ):
            yield self._histogram(name, doc, hist)

    def _gauge(self, name: str, doc: str, value: float) -> Metric:
        family = GaugeMetricFamily(name, doc, labels=list(LABELS))
        family.add_metric(self._labels, value)
        return family

    def _counter(self, name: str, doc: str, value: float) -> Metric:
        family = CounterMetricFamily(name, doc, labels=list(LABELS))
        family.add_metric(self._labels, value)
        return family

    def _histogram(self, name: str, doc: str, hist: BatchHistogram) -> Metric:
        family = HistogramMetricFamily(name, doc, labels=list(LABELS))
        buckets = [(_bound(bound), count) for bound, count in hist.cumulative()]
        family.add_metric(self._labels, buckets, hist.sum)
        return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
