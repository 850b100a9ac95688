"""The shape of ``report.json``: pydantic models, so the report is validated as it is built.

``report_json_schema()`` gives the JSON Schema for consumers in other languages.
Times are milliseconds, rates are shares in [0, 1], throughput is per second.
Bump ``SCHEMA_VERSION`` when a field changes meaning or goes away.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Percentiles(_Model):
    p50: float
    p95: float
    p99: float


class Interval(_Model):
    """A point estimate with its 95% interval (None when there were too few repeats)."""

    value: float
    ci_low: float | None
    ci_high: float | None
    n: int = Field(ge=0, description="paired repeats the interval is taken over")


class DeltaPercentiles(_Model):
    p50: Interval
    p95: Interval
    p99: Interval


class ScenarioRow(_Model):
    """One scenario at one concurrency, all repeats pooled."""

    name: str
    description: str
    concurrency: int = Field(ge=1)
    ttft_ms: Percentiles | None
    itl_ms: Percentiles | None
    e2e_ms: Percentiles | None
    tpot_ms: Percentiles | None
    output_tokens_per_s: float = Field(ge=0)
    requests_per_s: float = Field(ge=0)
    requests: int = Field(ge=0, description="completed requests, all rounds")
    errors: int = Field(ge=0)
    blocked: int = Field(ge=0, description="load requests the gateway refused or cut")
    rounds: int = Field(ge=1)
    error_examples: list[str]
    notes: list[str]


class TaxRow(_Model):
    """Scenario minus baseline at one concurrency (ms; positive = slower)."""

    scenario: str
    baseline: str
    concurrency: int = Field(ge=1)
    ttft_ms: DeltaPercentiles | None
    itl_ms: DeltaPercentiles | None
    e2e_ms: DeltaPercentiles | None
    tpot_ms: DeltaPercentiles | None
    throughput_ratio: Interval


class SafetyRow(_Model):
    scenario: str
    n: int = Field(ge=0, description="items sent")
    errors: int = Field(ge=0, description="items with no usable answer (left out of rates)")
    catch_rate: dict[str, float | None] = Field(
        description="per harmful label: share blocked, altered or flagged")
    harmful_catch_rate: float | None
    false_block_rate: float | None
    false_alter_rate: float | None
    false_flag_rate: float | None
    counts: dict[str, dict[str, int]] = Field(description="label -> verdict -> items")
    ci95: dict[str, list[float]] = Field(
        default_factory=dict,
        description="label -> Wilson 95 % interval [low, high] of its caught share "
                    "(benign labels: of blocked + altered)")
    elapsed_s: float = Field(ge=0, description="wall time of this set's pass")
    error_examples: list[str]
    notes: list[str]


class MonitorTiming(_Model):
    """The gateway's own histogram mean over the measured rounds (from /metrics)."""

    scenario: str
    metric: str
    labels: dict[str, str]
    count: float
    mean_ms: float


class Machine(_Model):
    cpu_count: int | None
    platform: str
    python: str
    processor: str


class Meta(_Model):
    schema_version: int = SCHEMA_VERSION
    date: str = Field(description="run start, ISO 8601 UTC")
    machine: Machine
    command: str
    upstream_kind: str
    model: str
    profile: str
    concurrency: list[int]
    duration_s: int
    repeats: int
    warmup_s: float
    max_tokens: int
    load_labels: str
    seed: int
    ci_method: str
    wall_s: float
    phases_s: dict[str, float] = Field(description="wall seconds per phase of the run")
    notes: list[str]


class Report(_Model):
    meta: Meta
    scenarios: list[ScenarioRow]
    tax: list[TaxRow]
    safety: list[SafetyRow]
    monitor_timings: list[MonitorTiming]


def report_json_schema() -> dict:
    return Report.model_json_schema()
