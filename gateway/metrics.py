"""The gateway's Prometheus metrics, all created on one injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitors.metrics import LATENCY_BUCKETS, MonitorMetrics

# Fine at the low end (proxy overhead is sub-millisecond), wide at the top (long generations).
LATENCY_BUCKETS_WIDE = LATENCY_BUCKETS + (30.0, 60.0, 120.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)


class GatewayMetrics:
    """Request, timing, upstream and stream metrics. ``monitors`` holds the monitor metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.monitors = MonitorMetrics(registry)
        self.requests = Counter(
            "taxgate_requests_total",
            "Requests answered, by route, model and HTTP status.",
            ["route", "model", "status"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "taxgate_in_flight_requests",
            "Requests being served now (streams included).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.ttft = Histogram(
            "taxgate_ttft_seconds",
            "Gateway time to first token: request received -> first write carrying text "
            "(content, reasoning, tool-call arguments, refusal) sent; the whole body when not streamed.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.itl = Histogram(
            "taxgate_itl_seconds",
            "Gap between writes carrying text sent to a streaming client.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.e2e = Histogram(
            "taxgate_e2e_seconds",
            "Request received -> last byte sent.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.upstream_ttft = Histogram(
            "taxgate_upstream_ttft_seconds",
            "Upstream request sent -> first chunk (whole body when not streamed) received.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.upstream_e2e = Histogram(
            "taxgate_upstream_e2e_seconds",
            "Upstream request sent -> last chunk received.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.overhead = Histogram(
            "taxgate_overhead_seconds",
            "Time the gateway added to a request, by phase "
            "(parse, detokenize, input_monitors, output_monitors, holdback).",
            ["phase"],
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "taxgate_prompt_tokens_total",
            "Prompt tokens reported by the upstream (usage).",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "taxgate_completion_tokens_total",
            "Completion tokens: the upstream's usage when reported, else text-carrying events sent.",
            ["model"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "taxgate_upstream_errors_total",
            "Upstream failures by kind: connect, timeout, protocol, midstream (an upstream's "
            "HTTP error answer is passed on, not counted here).",
            ["upstream", "kind"],
            registry=registry,
        )
        self.upstream_healthy = Gauge(
            "taxgate_upstream_healthy",
            "1 when the upstream passes health checks, else 0.",
            ["upstream"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.client_disconnects = Counter(
            "taxgate_client_disconnects_total",
            "Requests the client left before the whole answer was sent, streamed or not "
            "(the upstream request is cancelled).",
            ["route"],
            registry=registry,
        )
        self.stream_holdback = Histogram(
            "taxgate_stream_holdback_seconds",
            "Delay a hold-back window added to released text (first chunk held -> released).",
            buckets=LATENCY_BUCKETS_WIDE,
            registry=registry,
        )
        self.stream_held_chars = Histogram(
            "taxgate_stream_held_chars",
            "Characters a hold-back release let out (how much text had waited for it).",
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.stream_checks = Histogram(
            "taxgate_stream_checks",
            "Output-monitor checks per monitored stream (falls per token under load).",
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.stream_hold_cap = Counter(
            "taxgate_stream_hold_cap_total",
            "Fields whose held text reached streaming.max_hold_chars, by what was done "
            "(at_max_hold: release or block).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("release", "block"):
            self.stream_hold_cap.labels(outcome)  # exported as 0 until it happens
        self.stream_leaked_tokens = Counter(
            "taxgate_stream_leaked_tokens_total",
            "stream_first: content chunks sent to the client from a window later blocked.",
            registry=registry,
        )
        self.stream_blocks = Counter(
            "taxgate_stream_blocks_total",
            "Streams cut by an output monitor, by streaming mode.",
            ["mode"],
            registry=registry,
        )
        self.audit_events = Counter(
            "taxgate_audit_events_total",
            "Audit events written to the audit store.",
            registry=registry,
        )
        self.audit_dropped = Counter(
            "taxgate_audit_dropped_total",
            "Audit events that could not be written (store error); logged with the reason.",
            registry=registry,
        )
        self.trace_spans_exported = Counter(
            "taxgate_trace_spans_exported_total",
            "Spans the OTLP collector accepted (tracing on).",
            registry=registry,
        )
        self.trace_spans_failed = Counter(
            "taxgate_trace_spans_failed_total",
            "Spans dropped because their export failed (collector slow, down or refusing); "
            "requests are not affected. Logged once per tracing.failure_log_interval_s.",
            registry=registry,
        )
        self.unchecked_inputs = Counter(
            "taxgate_unchecked_inputs_total",
            "Input parts forwarded that no input monitor could read (uncheckable_input: "
            "allow), by kind: token_ids, embeddings, image, audio, video, file, other.",
            ["kind"],
            registry=registry,
        )
        self.uncheckable_rejected = Counter(
            "taxgate_uncheckable_rejected_total",
            "Requests refused because input monitors could not read part of them, by kind "
            "and reason (setting: uncheckable_input says reject; detokenize_failed).",
            ["kind", "reason"],
            registry=registry,
        )
        self.detokenized_prompts = Counter(
            "taxgate_detokenized_prompts_total",
            "Token-id prompts turned into text through the upstream for the input monitors.",
            registry=registry,
        )
