"""The report's tables as plain rows of strings: rendered to Markdown, HTML and the terminal.

One definition of what each table shows and how numbers are written, so the three
renderings never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.bench.schema import DeltaPercentiles, Interval, Percentiles, Report


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
    return "-" if p is None else ms(getattr(p, name))


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


def ratio(interval: Interval) -> str:
    text = f"{interval.value:.3f}"
    if interval.ci_low is not None and interval.ci_high is not None:
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
         f"{s.output_tokens_per_s:,.0f}", f"{s.requests_per_s:.2f}", str(s.requests),
         str(s.errors))
        for s in sorted(report.scenarios, key=lambda s: s.concurrency)
    ]
    return Table(
        "Latency and throughput",
        ("scenario", "users", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50",
         "E2E p99", "tok/s", "req/s", "requests", "errors"),
        rows,
        "Milliseconds, all repeats pooled. tok/s and req/s over the steady part of each round.",
    )


def tax_table(report: Report, baseline: str, compact: bool = False) -> Table:
    def d(p: DeltaPercentiles | None, name: str) -> str:
        return delta(_d(p, name), compact)

    rows = [
        (t.scenario, str(t.concurrency), d(t.ttft_ms, "p50"), d(t.ttft_ms, "p99"),
         d(t.itl_ms, "p50"), d(t.itl_ms, "p99"), d(t.e2e_ms, "p50"), d(t.e2e_ms, "p99"),
         ratio(t.throughput_ratio) if not compact else f"{t.throughput_ratio.value:.3f}")
        for t in sorted(report.tax, key=lambda t: t.concurrency)
        if t.baseline == baseline
    ]
    what = ("total tax: scenario minus the upstream alone" if baseline == "direct"
            else "monitor tax: scenario minus the gateway with no monitors")
    return Table(
        f"Safety tax vs {baseline}",
        ("scenario", "users", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50",
         "E2E p99", "tok/s ratio"),
        rows,
        f"The {what}; ms, 95% interval over paired repeats "
        f"{'after ±' if compact else 'in brackets'} (none with 1 repeat).",
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
    tables = [scenario_table(report), tax_table(report, "direct")]
    if any(t.baseline == "gateway" for t in report.tax):
        tables.append(tax_table(report, "gateway"))
    if report.safety:
        tables.append(safety_table(report))
    if report.monitor_timings:
        tables.append(timing_table(report))
    return tables
