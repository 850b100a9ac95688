"""The shape of ``report.json``: pydantic models, so the report is validated as it is built.

``report_json_schema()`` gives the JSON Schema for consumers in other languages.
Times are milliseconds, rates are shares in [0, 1], throughput is per second.
CPU is in seconds per 1,000 output tokens, or in cores (mean CPU seconds per second).
Bump ``SCHEMA_VERSION`` when a field changes meaning or goes away.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 3
# A p99 over fewer values is close to the sample's maximum: reported, but marked.
P99_MIN_SAMPLES = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Percentiles(_Model):
    p50: float
    p95: float
    p99: float
    n: int = Field(ge=0, description="values the percentiles are taken over")
    p99_supported: bool = Field(description=f"n >= {P99_MIN_SAMPLES}; else p99 is near the max")


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
    n_min: int = Field(ge=0, description="values on the side with fewer (pooled)")
    p99_supported: bool = Field(description=f"n_min >= {P99_MIN_SAMPLES}")


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
    cpu_cores: dict[str, float | None] = Field(
        description="median over the rounds of the mean cores each part used in the "
        "steady window: load generator, upstream, gateway, machine"
    )
    gateway_cpu_s_per_1k_tokens: float | None = Field(
        description="the gateway processes' CPU seconds per 1,000 output tokens (None: direct)"
    )
    flags: list[str] = Field(description="client-bound, upstream-bound, machine-bound, gateway-bound (from cpu_cores)")


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
    cpu_s_per_1k_tokens: Interval | None = Field(
        description="gateway CPU s per 1,000 tokens, scenario minus baseline (direct: 0)"
    )
    flags: list[str] = Field(description="saturation flags of either side")


class LevelSummary(_Model):
    """What bounded a concurrency level: the union of its scenarios' flags."""

    concurrency: int = Field(ge=1)
    flags: list[str]
    saturated: bool = Field(
        description="client-, upstream- or machine-bound: its tax is partly this machine's, not the gateway's"
    )


class HeadlineRow(_Model):
    """One line per monitor set (and the bare gateway vs direct) at the headline level."""

    scenario: str
    baseline: str
    concurrency: int = Field(ge=1)
    ttft_p50_ms: Interval | None
    e2e_p50_ms: Interval | None
    throughput_ratio: Interval
    gateway_cpu_s_per_1k_tokens: float | None
    cpu_s_per_1k_tokens: Interval | None = Field(description="over the baseline")
    harmful_catch_rate: float | None
    false_positive_rate: float | None = Field(
        None, description="benign items blocked, altered or flagged (a false positive of any action)"
    )
    false_block_rate: float | None
    false_alter_rate: float | None
    false_flag_rate: float | None = None
    flags: list[str]
    flagged_levels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="every level at which this row's scenario or baseline carries a flag: users -> flags",
    )


class SafetyRates(_Model):
    """The safety effect over one set of items (every source, or one)."""

    n: int = Field(ge=0, description="items sent")
    errors: int = Field(ge=0, description="items with no usable answer (left out of rates)")
    catch_rate: dict[str, float | None] = Field(
        description="per harmful label (any label but benign): share blocked, altered or flagged"
    )
    harmful_catch_rate: float | None
    harmful_ci95: list[float] | None = Field(None, description="Wilson 95 % interval of harmful_catch_rate")
    false_positive_rate: float | None = Field(
        description="benign items blocked, altered or flagged: a false positive of any action"
    )
    false_positive_ci95: list[float] | None = Field(description="Wilson 95 % interval of false_positive_rate")
    false_block_rate: float | None
    false_alter_rate: float | None
    false_flag_rate: float | None
    counts: dict[str, dict[str, int]] = Field(description="label -> verdict -> items")
    ci95: dict[str, list[float]] = Field(
        default_factory=dict,
        description="label -> Wilson 95 % interval [low, high] of its caught share "
        "(benign labels: of blocked + altered)",
    )


class SafetySourceRow(SafetyRates):
    source: str = Field(description="the items' `source` field, else their dataset's name")


class SafetyRow(SafetyRates):
    scenario: str
    sources: list[SafetySourceRow] = Field(default_factory=list, description="the same, per dataset source")
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


class CounterDelta(_Model):
    """How much one counter of a target's /metrics rose during the rounds."""

    metric: str
    labels: dict[str, str]
    increase: float


class TargetRow(_Model):
    """An endpoint the bench did not start (``--target``): what it could not know, what it read."""

    name: str
    url: str
    taxgate: bool = Field(description="its /metrics is a taxgate's (timings and counters read)")
    unknown: list[str] = Field(description="what the bench could not know about it")
    counters: list[CounterDelta] = Field(
        description="skipped checks, monitor and upstream errors, refused requests during the rounds (a taxgate only)"
    )
    notes: list[str]


class Machine(_Model):
    cpu_count: int | None
    platform: str
    python: str
    processor: str


class PlanLevel(_Model):
    users: int = Field(ge=1)
    repeats: int = Field(ge=1)
    requests: int = Field(ge=0, description="requests per round (0: timed rounds)")
    duration_s: int = Field(ge=1, description="round length, or its ceiling")
    stagger_s: float = Field(ge=0)


class Meta(_Model):
    schema_version: int = SCHEMA_VERSION
    date: str = Field(description="run start, ISO 8601 UTC")
    machine: Machine
    command: str
    upstream_kind: str
    model: str
    route: str = Field("chat", description="the API route of every request: chat, responses")
    profile: str
    concurrency: list[int]
    plan: list[PlanLevel]
    warmup_s: float
    max_tokens: int
    load_labels: str
    seed: int
    ci_method: str
    wall_s: float
    phases_s: dict[str, float] = Field(description="wall seconds per phase of the run")
    p99_min_samples: int = P99_MIN_SAMPLES
    notes: list[str]
    missing: list[str] = Field(
        default_factory=list,
        description="what the run set out to measure and could not (a target left out, rounds a lost worker stopped)",
    )


class Report(_Model):
    meta: Meta
    headline_concurrency: int | None = Field(
        description="the highest level no client-, upstream- or machine-bound flag marks (else the "
        "lowest); gateway-bound marks the gateway's own limit, part of the tax"
    )
    headline: list[HeadlineRow]
    levels: list[LevelSummary]
    scenarios: list[ScenarioRow]
    tax: list[TaxRow]
    safety: list[SafetyRow]
    monitor_timings: list[MonitorTiming]
    targets: list[TargetRow] = Field(
        default_factory=list, description="the --target endpoints (not started by the bench)"
    )


def report_json_schema() -> dict:
    return Report.model_json_schema()
