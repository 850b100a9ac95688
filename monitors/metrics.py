"""Prometheus metrics of the monitors, created on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Sub-millisecond resolution: a regex monitor costs microseconds, a BERT one tens of ms.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class MonitorMetrics:
    """Per monitor and stage: time, queue wait, batch size, verdicts, failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "taxgate_monitor_duration_seconds",
            "Time one monitor's check took, queue wait included; shadow and late checks too, which no stage waits for.",
            ["monitor", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "taxgate_monitor_queue_wait_seconds",
            "Time a text waited in a monitor's micro-batch queue before its batch ran.",
            ["monitor"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "taxgate_monitor_batch_size",
            "Texts scored in one call of a batched monitor.",
            ["monitor"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.call_duration = Histogram(
            "taxgate_monitor_call_seconds",
            "Time one call to a serving engine took (a served classifier or detector: many "
            "checks' texts per call), failed calls included.",
            ["monitor"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.verdicts = Counter(
            "taxgate_monitor_verdicts_total",
            "Monitor verdicts by action taken: the configured action on a hit (shadow for shadow "
            "and late checks), else pass; a failed check waited for with on_error: closed is block.",
            ["monitor", "stage", "action"],
            registry=registry,
        )
        self.errors = Counter(
            "taxgate_monitor_errors_total",
            "Monitor failures by kind: error (check or hold raised), timeout, overload (queue "
            "full, or a fail-closed check shed as predicted past the stage budget).",
            ["monitor", "stage", "kind"],
            registry=registry,
        )
        self.fail_open = Counter(
            "taxgate_monitor_fail_open_total",
            "Checks let through because the monitor failed and on_error is open (a stream is "
            "checked many times, so one request can count more than once).",
            ["monitor", "stage"],
            registry=registry,
        )
        # Coverage under a stage budget: in_time / (in_time + skipped) per monitor and stage.
        self.in_time = Counter(
            "taxgate_monitor_checks_in_time_total",
            "Enforcing checks whose verdict arrived within the stage budget (or with none set).",
            ["monitor", "stage"],
            registry=registry,
        )
        self.skipped = Counter(
            "taxgate_monitor_skipped_total",
            "Checks a degrade: skip monitor gave up under the stage budget: predicted (not "
            "queued, its predicted wait did not fit) or late (admitted, released at the budget).",
            ["monitor", "stage", "reason"],
            registry=registry,
        )
