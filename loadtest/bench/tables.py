"""The report's tables as plain rows of strings: rendered to Markdown, HTML and the terminal.

One definition of what each table shows and how numbers are written, so the three
renderings never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.bench.cpu import BENCH, GATEWAY, LOAD_BUSIEST, LOAD_GENERATOR, MACHINE, UPSTREAM
from loadtest.bench.schema import (
    P99_MIN_SAMPLES,
    DeltaPercentiles,
    Interval,
    Percentiles,
    Report,
)

# After a p99 taken over fewer than P99_MIN_SAMPLES values: it is near the sample's maximum.
FEW = "†"
FEW_NOTE = (f"{FEW} p99 over fewer than {P99_MIN_SAMPLES} requests: close to the largest "
            "value seen, not a percentile to rely on.")


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
        (s.name, str(s.concurrency), pct(s.ttft_ms, "p50"), pct(s.ttft_ms, "p99"),
         pct(s.itl_ms, "p50"), pct(s.itl_ms, "p99"), pct(s.e2e_ms, "p50"), pct(s.e2e_ms, "p99"),
         f"{s.output_tokens_per_s:,.0f}", f"{s.requests_per_s:.2f}",
         cpu_per_1k(s.gateway_cpu_s_per_1k_tokens), str(s.requests), str(s.errors))
        for s in sorted(report.scenarios, key=lambda s: s.concurrency)
    ]
    return Table(
        "Latency and throughput",
        ("scenario", "users", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50",
         "E2E p99", "tok/s", "req/s", "gw CPU s/1k tok", "requests", "errors"),
        rows,
        "Milliseconds, all repeats pooled. tok/s and req/s: each user's request-to-request "
        "cycles in the closed loop. gw CPU: the gateway processes' CPU seconds per 1,000 "
        f"output tokens. {FEW_NOTE}",
    )


def headline_table(report: Report) -> Table:
    rows = []
    for h in report.headline:
        false = "-" if h.false_block_rate is None else (
            share(h.false_block_rate)
            + (f" (+{share(h.false_alter_rate)} altered)" if h.false_alter_rate else ""))
        rows.append((
            h.scenario, h.baseline, delta(h.ttft_p50_ms, compact=True),
            delta(h.e2e_p50_ms, compact=True), ratio(h.throughput_ratio, compact=True),
            cpu_per_1k(h.gateway_cpu_s_per_1k_tokens),
            cpu_delta(h.cpu_s_per_1k_tokens, compact=True),
            share(h.harmful_catch_rate), false, flags(h.flags),
        ))
    level = report.headline_concurrency
    saturated = next((lv for lv in report.levels if lv.concurrency == level), None)
    why = ("the highest level no saturation flag marks" if saturated and not saturated.saturated
           else "every level is marked saturated: the lowest is shown, read it with care")
    return Table(
        f"Headline at {level} user{'' if level == 1 else 's'}",
        ("scenario", "vs", "TTFT p50 tax", "E2E p50 tax", "tok/s ratio", "gw CPU s/1k tok",
         "CPU over vs", "caught harmful", "false block", "flags"),
        rows,
        f"At {level} concurrent user{'' if level == 1 else 's'} ({why}). Taxes in ms with a 95% interval (±) over "
        "paired repeats; the bare gateway against the upstream, each monitor set against "
        "the bare gateway, each --target endpoint against the upstream. CPU: the gateway "
        "processes' CPU seconds per 1,000 output tokens, and over the baseline's. Caught: "
        "harmful dataset items blocked, redacted or flagged; false block: benign items refused.",
    )


def saturation_table(report: Report) -> Table:
    parts = (LOAD_GENERATOR, LOAD_BUSIEST, UPSTREAM, GATEWAY, BENCH, MACHINE)
    rows = [
        (s.name, str(s.concurrency),
         *("-" if s.cpu_cores.get(part) is None else f"{s.cpu_cores[part]:.2f}"
           for part in parts), flags(s.flags))
        for s in sorted(report.scenarios, key=lambda s: s.concurrency)
    ]
    levels = "; ".join(f"{lv.concurrency} user{'' if lv.concurrency == 1 else 's'}: "
                       f"{flags(lv.flags)}" for lv in report.levels)
    return Table(
        "Saturation (CPU during the rounds)",
        ("scenario", "users", "load gen cores", "busiest load proc", "upstream cores",
         "gateway cores", "bench cores", "machine cores", "flags"),
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
        (t.scenario, str(t.concurrency), d(t.ttft_ms, "p50"), d(t.ttft_ms, "p99"),
         d(t.itl_ms, "p50"), d(t.itl_ms, "p99"), d(t.e2e_ms, "p50"), d(t.e2e_ms, "p99"),
         ratio(t.throughput_ratio, compact), cpu_delta(t.cpu_s_per_1k_tokens, compact),
         flags(t.flags))
        for t in sorted(report.tax, key=lambda t: t.concurrency)
        if t.baseline == baseline
    ]
    headers = ("scenario", "users", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50",
               "E2E p99", "tok/s ratio", "gw CPU s/1k tok", "flags")
    if compact:  # the terminal prints each level's flags once, under the tables
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    what = ("total tax: scenario minus the upstream alone" if baseline == "direct"
            else "monitor tax: scenario minus the gateway with no monitors")
    return Table(
        f"Safety tax vs {baseline}",
        headers,
        rows,
        f"The {what}; ms, 95% interval over paired repeats "
        f"{'after ±' if compact else 'in brackets'} (none with 1 repeat). gw CPU: the "
        f"gateway's CPU seconds per 1,000 output tokens over the baseline's. {FEW_NOTE}",
    )


def _with_interval(row, label: str) -> str:
    value = row.catch_rate.get(label)
    interval = row.ci95.get(label)
    if value is None or not interval:
        return share(value)
    n = sum(v for k, v in row.counts.get(label, {}).items() if k != "error")
    return f"{share(value)} [{interval[0] * 100:.1f}-{interval[1] * 100:.1f}] n={n}"


def safety_table(report: Report) -> Table:
    labels = sorted({label for s in report.safety for label in s.catch_rate})
    rows = [
        (s.scenario, *(_with_interval(s, label) for label in labels),
         share(s.harmful_catch_rate), share(s.false_block_rate), share(s.false_alter_rate),
         share(s.false_flag_rate), str(s.n), str(s.errors))
        for s in report.safety
    ]
    return Table(
        "Safety effect (labelled dataset)",
        ("monitor set", *(f"caught {label}" for label in labels), "caught harmful",
         "false block", "false alter", "false flag", "items", "errors"),
        rows,
        "Caught = blocked, redacted or flagged, with its Wilson 95% interval and the items "
        "answered. False rates are over benign items (every benign label pooled).",
    )


def timing_table(report: Report) -> Table:
    rows = []
    for t in report.monitor_timings:
        part = " / ".join(t.labels.values()) or "-"
        rows.append((t.scenario, t.metric.removeprefix("taxgate_").removesuffix("_seconds"),
                     part, f"{t.count:,.0f}", f"{t.mean_ms:.2f}"))
    return Table(
        "Gateway-side timings during the rounds (from /metrics)",
        ("scenario", "histogram", "part", "observations", "mean ms"),
        rows,
        "Means of the gateway's own histograms over the measured rounds only.",
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
            f" +{c.increase:,.0f}" for c in t.counters)
        seen = (counted or "none rose") if t.taxgate else "-"
        rows.append((t.name, t.url, "yes" if t.taxgate else "no", seen, "; ".join(t.notes)))
    unknown = "; ".join(report.targets[0].unknown) if report.targets else ""
    return Table(
        "Targets (endpoints the bench did not start)",
        ("target", "URL", "taxgate /metrics", "skipped checks, errors, refusals in the rounds",
         "notes"),
        rows,
        f"Measured against direct like every scenario. Not known to the bench: {unknown}. "
        "Its monitor time, when it is a taxgate, is in the gateway-side timings table.",
    )
