"""The report's tables as plain rows of strings: rendered to Markdown, HTML and the terminal.

One definition of what each table shows and how numbers are written, so the three
renderings never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.bench.cpu import BENCH, GATEWAY, LOAD_BUSIEST, LOAD_GENERATOR, MACHINE, UPSTREAM
from loadtest.bench.safety import is_benign
from loadtest.bench.schema import (
    P99_MIN_SAMPLES,
    DeltaPercentiles,
    HeadlineRow,
    Interval,
    Percentiles,
    Report,
    SafetyRates,
)

# After a p99 taken over fewer than P99_MIN_SAMPLES values: it is near the sample's maximum.
FEW = "†"
FEW_NOTE = (
    f"{FEW} p99 over fewer than {P99_MIN_SAMPLES} requests: close to the largest "
    "value seen, not a percentile to rely on."
)


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    caption: str = ""


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def pct(p: Percentiles | None, name: str) -> str:
    if p is None:
        return "-"
    return ms(getattr(p, name)) + (FEW if name == "p99" and not p.p99_supported else "")


def cpu_per_1k(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cpu_delta(interval: Interval | None, compact: bool = False) -> str:
    if interval is None:
        return "-"
    text = f"{interval.value:+.3f}"
    if interval.ci_low is not None and interval.ci_high is not None:
        if compact:
            half = max(interval.value - interval.ci_low, interval.ci_high - interval.value)
            text += f" ±{half:.3f}"
        else:
            text += f" ({interval.ci_low:+.3f}..{interval.ci_high:+.3f})"
    return text


def flags(values: list[str]) -> str:
    return ", ".join(values) or "-"


def delta(interval: Interval | None, compact: bool = False) -> str:
    """``+12.3 (+8.1..+16.5)``: the point estimate and its 95% interval when known.

    ``compact`` writes ``+12.3 ±4.2`` (the larger side, for bootstrap's asymmetric
    intervals) to fit a terminal.
    """
    if interval is None:
        return "-"
    text = f"{interval.value:+.1f}"
    if interval.ci_low is not None and interval.ci_high is not None:
        if compact:
            half = max(interval.value - interval.ci_low, interval.ci_high - interval.value)
            text += f" ±{half:.1f}"
        else:
            text += f" ({interval.ci_low:+.1f}..{interval.ci_high:+.1f})"
    return text


def ratio(interval: Interval, compact: bool = False) -> str:
    text = f"{interval.value:.3f}"
    if interval.ci_low is not None and interval.ci_high is not None:
        if compact:
            half = max(interval.value - interval.ci_low, interval.ci_high - interval.value)
            text += f" ±{half:.3f}"
        else:
            text += f" ({interval.ci_low:.3f}..{interval.ci_high:.3f})"
    return text


def share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _d(p: DeltaPercentiles | None, name: str) -> Interval | None:
    return None if p is None else getattr(p, name)


def scenario_table(report: Report) -> Table:
    rows = [
        (
            s.name,
            str(s.concurrency),
            pct(s.ttft_ms, "p50"),
            pct(s.ttft_ms, "p99"),
            pct(s.itl_ms, "p50"),
            pct(s.itl_ms, "p99"),
            pct(s.e2e_ms, "p50"),
            pct(s.e2e_ms, "p99"),
            f"{s.output_tokens_per_s:,.0f}",
            f"{s.requests_per_s:.2f}",
            cpu_per_1k(s.gateway_cpu_s_per_1k_tokens),
            str(s.requests),
            str(s.errors),
        )
        for s in sorted(report.scenarios, key=lambda s: s.concurrency)
    ]
    return Table(
        "Latency and throughput",
        (
            "scenario",
            "users",
            "TTFT p50",
            "TTFT p99",
            "ITL p50",
            "ITL p99",
            "E2E p50",
            "E2E p99",
            "tok/s",
            "req/s",
            "gw CPU s/1k tok",
            "requests",
            "errors",
        ),
        rows,
        "Milliseconds, all repeats pooled. tok/s and req/s: each user's request-to-request "
        "cycles in the closed loop. gw CPU: the gateway processes' CPU seconds per 1,000 "
        f"output tokens. {FEW_NOTE}",
    )


def false_positives(h: HeadlineRow) -> str:
    """``1.2% (block 0.2%, flag 1.0%)``: any action, then the actions that make it up."""
    if h.false_positive_rate is None:
        return "-" if h.harmful_catch_rate is None else "n/a (no benign item answered)"
    parts = [
        f"{name} {share(value)}"
        for name, value in (("block", h.false_block_rate), ("alter", h.false_alter_rate), ("flag", h.false_flag_rate))
        if value
    ]
    return share(h.false_positive_rate) + (f" ({', '.join(parts)})" if parts else "")


def _flagged(h: HeadlineRow) -> str:
    levels = [f"{users} user{'' if users == '1' else 's'} {', '.join(f)}" for users, f in h.flagged_levels.items()]
    return f"{h.scenario} vs {h.baseline}: " + ("; ".join(levels) if levels else "no flag at any level")


def headline_table(report: Report) -> Table:
    rows = []
    for h in report.headline:
        caught = (
            share(h.harmful_catch_rate)
            if h.harmful_catch_rate is not None
            else ("-" if h.false_positive_rate is None else "n/a (no harmful item answered)")
        )
        rows.append(
            (
                h.scenario,
                h.baseline,
                delta(h.ttft_p50_ms, compact=True),
                delta(h.e2e_p50_ms, compact=True),
                ratio(h.throughput_ratio, compact=True),
                cpu_per_1k(h.gateway_cpu_s_per_1k_tokens),
                cpu_delta(h.cpu_s_per_1k_tokens, compact=True),
                caught,
                false_positives(h),
                flags(h.flags),
            )
        )
    level = report.headline_concurrency
    saturated = next((lv for lv in report.levels if lv.concurrency == level), None)
    why = (
        "the highest level that no client-, upstream- or machine-bound flag marks; gateway-bound "
        "marks the gateway's own limit, part of its tax"
        if saturated and not saturated.saturated
        else "every level is marked client-, upstream- or machine-bound: the lowest is shown, read it with care"
    )
    per_set = "; ".join(_flagged(h) for h in report.headline)
    return Table(
        f"Headline at {level} user{'' if level == 1 else 's'}",
        (
            "scenario",
            "vs",
            "TTFT p50 tax",
            "E2E p50 tax",
            "tok/s ratio",
            "gw CPU s/1k tok",
            "CPU over vs",
            "caught harmful",
            "false positive (any action)",
            "flags",
        ),
        rows,
        f"At {level} concurrent user{'' if level == 1 else 's'} ({why}). Taxes in ms with a 95% interval (±) over "
        "paired repeats; the bare gateway against the upstream, each monitor set against "
        "the bare gateway, each --target endpoint against the upstream. CPU: the gateway "
        "processes' CPU seconds per 1,000 output tokens, and over the baseline's. Caught: harmful "
        "dataset items blocked, redacted or flagged (the safety pass, every source pooled: see the "
        "safety table per source); false positive: benign "
        f"items blocked, redacted or flagged, whatever the action. Flags at every level: {per_set}.",
    )


def saturation_table(report: Report) -> Table:
    parts = (LOAD_GENERATOR, LOAD_BUSIEST, UPSTREAM, GATEWAY, BENCH, MACHINE)
    rows = [
        (
            s.name,
            str(s.concurrency),
            *("-" if s.cpu_cores.get(part) is None else f"{s.cpu_cores[part]:.2f}" for part in parts),
            flags(s.flags),
        )
        for s in sorted(report.scenarios, key=lambda s: s.concurrency)
    ]
    levels = "; ".join(
        f"{lv.concurrency} user{'' if lv.concurrency == 1 else 's'}: {flags(lv.flags)}" for lv in report.levels
    )
    return Table(
        "Saturation (CPU during the rounds)",
        (
            "scenario",
            "users",
            "load gen cores",
            "busiest load proc",
            "upstream cores",
            "gateway cores",
            "bench cores",
            "machine cores",
            "flags",
        ),
        rows,
        f"Median over the rounds of the mean cores used in each round's steady window. "
        f"client-/upstream-/gateway-bound: that process used >= 85% of its one core (with "
        f"Locust workers: the busiest of the master and workers; load gen: all of them); "
        f"machine-bound: the whole machine (other tenants included) >= 85% of its cores; "
        f"other-load: processes not the bench's used >= 25% of the machine. "
        f"A client-, upstream- or machine-bound level's tax is partly this machine's. "
        f"Per level: {levels}.",
    )


def tax_table(report: Report, baseline: str, compact: bool = False) -> Table:
    def d(p: DeltaPercentiles | None, name: str) -> str:
        text = delta(_d(p, name), compact)
        return text + (FEW if p is not None and name == "p99" and not p.p99_supported else "")

    rows = [
        (
            t.scenario,
            str(t.concurrency),
            d(t.ttft_ms, "p50"),
            d(t.ttft_ms, "p99"),
            d(t.itl_ms, "p50"),
            d(t.itl_ms, "p99"),
            d(t.e2e_ms, "p50"),
            d(t.e2e_ms, "p99"),
            ratio(t.throughput_ratio, compact),
            cpu_delta(t.cpu_s_per_1k_tokens, compact),
            flags(t.flags),
        )
        for t in sorted(report.tax, key=lambda t: t.concurrency)
        if t.baseline == baseline
    ]
    headers = (
        "scenario",
        "users",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "E2E p50",
        "E2E p99",
        "tok/s ratio",
        "gw CPU s/1k tok",
        "flags",
    )
    if compact:  # the terminal prints each level's flags once, under the tables
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    what = (
        "total tax: scenario minus the upstream alone"
        if baseline == "direct"
        else "monitor tax: scenario minus the gateway with no monitors"
    )
    return Table(
        f"Safety tax vs {baseline}",
        headers,
        rows,
        f"The {what}; ms, 95% interval over paired repeats "
        f"{'after ±' if compact else 'in brackets'} (none with 1 repeat). gw CPU: the "
        f"gateway's CPU seconds per 1,000 output tokens over the baseline's. {FEW_NOTE}",
    )


def _interval(value: float | None, interval: list[float] | None, n: int | None = None) -> str:
    text = share(value)
    if value is not None and interval:
        text += f" [{interval[0] * 100:.1f}-{interval[1] * 100:.1f}]"
    return text + (f" n={n}" if value is not None and n is not None else "")


def unmeasured(counts: dict[str, dict[str, int]], labels: list[str], what: str) -> str:
    """Why a rate over ``labels`` has no value: "n/a (...)", never a 0 %."""
    sent = sum(sum(counts.get(label, {}).values()) for label in labels)
    if sent == 0:
        return f"n/a (no {what} item)"
    return f"n/a (all {sent} {what} items errored)"


def _caught(row: SafetyRates, label: str) -> str:
    if label not in row.counts:
        return "-"  # this source has no such label
    value = row.catch_rate.get(label)
    if value is None:
        return unmeasured(row.counts, [label], label)
    n = sum(v for k, v in row.counts[label].items() if k != "error")
    return _interval(value, row.ci95.get(label), n)


def _benign(row: SafetyRates, value: float | None, interval: list[float] | None = None) -> str:
    if value is None:
        return unmeasured(row.counts, [label for label in row.counts if is_benign(label)], "benign")
    return _interval(value, interval)


def _safety_cells(row: SafetyRates, labels: list[str]) -> tuple[str, ...]:
    harmful = [label for label in row.counts if not is_benign(label)]
    caught = (
        unmeasured(row.counts, harmful, "harmful")
        if row.harmful_catch_rate is None
        else _interval(row.harmful_catch_rate, row.harmful_ci95)
    )
    return (
        *(_caught(row, label) for label in labels),
        caught,
        _benign(row, row.false_positive_rate, row.false_positive_ci95),
        _benign(row, row.false_block_rate),
        _benign(row, row.false_alter_rate),
        _benign(row, row.false_flag_rate),
        str(row.n),
        str(row.errors),
    )


def safety_table(report: Report) -> Table:
    labels = sorted({label for s in report.safety for label in s.catch_rate})
    rows = []
    for s in report.safety:
        rows.append(
            (
                s.scenario,
                "all" if len(s.sources) > 1 else (s.sources[0].source if s.sources else "all"),
                *_safety_cells(s, labels),
            )
        )
        if len(s.sources) > 1:
            rows += [(s.scenario, src.source, *_safety_cells(src, labels)) for src in s.sources]
    return Table(
        "Safety effect (labelled dataset, per source)",
        (
            "monitor set",
            "source",
            *(f"caught {label}" for label in labels),
            "caught harmful",
            "false positive (any)",
            "false block",
            "false alter",
            "false flag",
            "items",
            "errors",
        ),
        rows,
        "Measured through gateways in front of the built-in simulator in echo mode (the answer repeats the "
        "prompt): the monitor sets, not a model. Caught = blocked, redacted or flagged, with its Wilson 95% "
        "interval and the items answered; harmful = every label but benign. False rates are over benign items "
        "(every benign label pooled); false positive = any action. A row per dataset source (the items' "
        "`source` field, else the dataset's name) after each set's pooled row: a rate that holds on one "
        "source may not on another. n/a: nothing to measure, and why.",
    )


def timing_table(report: Report) -> Table:
    rows = []
    for t in report.monitor_timings:
        part = " / ".join(t.labels.values()) or "-"
        unit = " ms" if t.metric.endswith("_seconds") else " texts"
        rows.append(
            (
                t.scenario,
                t.metric.removeprefix("taxgate_").removesuffix("_seconds"),
                part,
                f"{t.count:,.0f}",
                f"{t.mean_ms:.2f}{unit}",
            )
        )
    return Table(
        "Gateway-side timings during the rounds (from /metrics)",
        ("scenario", "histogram", "part", "observations", "mean"),
        rows,
        "Means of the gateway's own histograms over the measured rounds only; batch_size: "
        "texts per call of a batched monitor.",
    )


def all_tables(report: Report) -> list[Table]:
    """Every table of the report, the headline first."""
    tables = [headline_table(report)] if report.headline else []
    tables += [scenario_table(report), tax_table(report, "direct")]
    if any(t.baseline == "gateway" for t in report.tax):
        tables.append(tax_table(report, "gateway"))
    tables.append(saturation_table(report))
    if report.safety:
        tables.append(safety_table(report))
    if report.monitor_timings:
        tables.append(timing_table(report))
    if report.targets:
        tables.append(target_table(report))
    return tables


def target_table(report: Report) -> Table:
    rows = []
    for t in report.targets:
        counted = "; ".join(
            f"{c.metric.removeprefix('taxgate_').removesuffix('_total')}"
            f"{'{' + ','.join(f'{k}={v}' for k, v in c.labels.items()) + '}' if c.labels else ''}"
            f" +{c.increase:,.0f}"
            for c in t.counters
        )
        seen = (counted or "none rose") if t.taxgate else "-"
        rows.append((t.name, t.url, "yes" if t.taxgate else "no", seen, "; ".join(t.notes)))
    unknown = "; ".join(report.targets[0].unknown) if report.targets else ""
    return Table(
        "Targets (endpoints the bench did not start)",
        ("target", "URL", "taxgate /metrics", "skipped checks, errors, refusals in the rounds", "notes"),
        rows,
        f"Measured against direct like every scenario. Not known to the bench: {unknown}. "
        "Its monitor time, when it is a taxgate, is in the gateway-side timings table.",
    )
