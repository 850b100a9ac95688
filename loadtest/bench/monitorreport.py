"""The report of ``taxgate bench monitors``: validated ``report.json``, ``report.md``, ``report.html``.

Built from the runner's result with the bench's own pieces: its interval and
percentile models (``schema``), its table type and number formats (``tables``), its
Markdown/HTML writers (``report``) and terminal rendering (``terminal``). It opens
with the headline: per monitor, its fastest setting.
"""

from __future__ import annotations

import html
import random
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from loadtest.bench import schema
from loadtest.bench.monitorstats import VariantStats, headline, mean_batch, variant_stats
from loadtest.bench.report import html_page, html_table, md_table, write_files
from loadtest.bench.stats import Estimate, Percentiles
from loadtest.bench.tables import FEW, FEW_NOTE, Table, pct, ratio, share

if TYPE_CHECKING:
    from loadtest.bench.monitorrun import MonitorBenchResult

TITLE = "taxgate bench monitors"


class VariantRow(schema._Model):
    """One monitor at one setting, all repeats pooled."""

    monitor: str
    max_batch: int | None = Field(description="None: inline (called on the event loop)")
    rounds: int = Field(ge=1)
    texts: int = Field(ge=0)
    texts_per_s: schema.Interval = Field(description="pooled; interval over the repeats")
    texts_per_cpu_s: float | None
    latency_ms: schema.Percentiles | None
    mean_batch: float | None
    padding: float | None = Field(description="share of the computed tokens that were padding")
    speedup: schema.Interval | None = Field(description="texts/s over the baseline's, paired by repeat")
    baseline: str | None


class RoundRow(schema._Model):
    """One measured round, for re-analysis."""

    monitor: str
    max_batch: int | None
    repeat: int = Field(ge=0)
    texts: int = Field(ge=0)
    wall_s: float = Field(ge=0)
    texts_per_s: float = Field(ge=0)
    batches: int = Field(ge=0)
    mean_batch: float | None
    tokens: int = Field(ge=0)
    padded_tokens: int = Field(ge=0)
    cores_used: float = Field(ge=0)


class MonitorMeta(schema._Model):
    date: str
    machine: schema.Machine
    command: str
    monitors: list[str]
    model: str = Field(description="the Detoxify model measured, when it was one of the monitors")
    concurrency: int = Field(ge=1)
    batches: list[int]
    per_round: str
    repeats: int = Field(ge=1)
    max_wait_ms: float
    texts: int = Field(ge=0, description="distinct dataset texts sent")
    tokens_mean: float | None
    tokens_max: int | None
    torch: str | None
    torch_threads: int | None
    load_avg_before: list[float]
    load_avg_after: list[float]
    cores_used: float = Field(description="this process's CPU seconds per wall second in the rounds")
    ci_method: str
    wall_s: float
    notes: list[str]


class MonitorReport(schema._Model):
    meta: MonitorMeta
    headline: list[VariantRow]
    variants: list[VariantRow]
    rounds: list[RoundRow]


def _interval(e: Estimate | None) -> schema.Interval | None:
    return None if e is None else schema.Interval(value=e.value, ci_low=e.low, ci_high=e.high, n=e.n)


def _ms(p: Percentiles | None, n: int) -> schema.Percentiles | None:
    if p is None:
        return None
    return schema.Percentiles(**p.scaled(1000.0).as_dict(), n=n, p99_supported=n >= schema.P99_MIN_SAMPLES)


def _row(s: VariantStats) -> VariantRow:
    return VariantRow(
        monitor=s.variant.monitor,
        max_batch=s.variant.max_batch,
        rounds=s.rounds,
        texts=s.texts,
        texts_per_s=_interval(s.texts_per_s),
        texts_per_cpu_s=s.texts_per_cpu_s,
        latency_ms=_ms(s.latency_s, s.texts),
        mean_batch=s.mean_batch,
        padding=s.padding,
        speedup=_interval(s.speedup),
        baseline=s.baseline,
    )


def build_report(result: MonitorBenchResult, machine: dict) -> MonitorReport:
    options = result.options
    stats = variant_stats(result.rounds, options.ci_method, random.Random(options.seed))
    rounds = [
        RoundRow(
            monitor=r.variant.monitor,
            max_batch=r.variant.max_batch,
            repeat=r.repeat,
            texts=r.texts,
            wall_s=r.wall_s,
            texts_per_s=r.texts_per_s,
            batches=r.batches,
            mean_batch=mean_batch(r.batched_texts, r.batches),
            tokens=r.tokens,
            padded_tokens=r.padded_tokens,
            cores_used=r.cores_used,
        )
        for r in result.rounds
    ]
    per_round = f"{options.duration_s:g} s" if options.requests is None else f"{options.requests} texts"
    meta = MonitorMeta(
        date=result.started_at.isoformat(timespec="seconds"),
        machine=schema.Machine(**machine),
        command=options.command,
        monitors=list(options.monitors),
        model=result.model,
        concurrency=options.concurrency,
        batches=list(options.batches),
        per_round=per_round,
        repeats=options.repeats,
        max_wait_ms=options.max_wait_ms,
        texts=result.texts,
        tokens_mean=result.tokens_mean,
        tokens_max=result.tokens_max,
        torch=result.torch,
        torch_threads=result.torch_threads,
        load_avg_before=list(result.load_avg_before),
        load_avg_after=list(result.load_avg_after),
        cores_used=result.cores_used,
        ci_method=options.ci_method,
        wall_s=result.wall_s,
        notes=list(result.notes),
    )
    return MonitorReport(
        meta=meta, headline=[_row(s) for s in headline(stats)], variants=[_row(s) for s in stats], rounds=rounds
    )


def _setting(row: VariantRow) -> str:
    return "inline" if row.max_batch is None else str(row.max_batch)


def _per_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _rate(e: schema.Interval) -> str:
    text = _per_s(e.value)
    if e.ci_low is not None and e.ci_high is not None:
        half = max(e.value - e.ci_low, e.ci_high - e.value)
        text += f" ±{half:,.1f}" if half < 100 else f" ±{half:,.0f}"
    return text


def _latency(p: schema.Percentiles | None, name: str) -> str:
    """Like the bench's ``pct``, with the digits a microsecond check needs."""
    value = None if p is None else getattr(p, name)
    if value is None or abs(value) >= 1:
        return pct(p, name)
    return f"{value:.3f}" + (FEW if name == "p99" and not p.p99_supported else "")


def _speedup(row: VariantRow) -> str:
    return "-" if row.speedup is None else ratio(row.speedup, compact=True) + "x"


def _number(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def headline_table(report: MonitorReport) -> Table:
    rows = [
        (
            h.monitor,
            _setting(h),
            _rate(h.texts_per_s),
            _latency(h.latency_ms, "p50"),
            _speedup(h),
            h.baseline.rsplit(" ", 1)[-1] if h.baseline else "-",
        )
        for h in report.headline
    ]
    m = report.meta
    return Table(
        f"Headline: the fastest setting of each monitor at {m.concurrency} concurrent texts",
        ("monitor", "max batch", "texts/s", "p50 ms", "speed-up", "over max batch"),
        rows,
        "texts/s with a 95% interval (±) over the repeats; speed-up: texts/s over the same "
        "monitor's smallest max_batch, paired by repeat. inline: called on the event loop, as "
        "the gateway calls a monitor marked inline.",
    )


def variants_table(report: MonitorReport) -> Table:
    rows = [
        (
            v.monitor,
            _setting(v),
            _rate(v.texts_per_s),
            _per_s(v.texts_per_cpu_s),
            _latency(v.latency_ms, "p50"),
            _latency(v.latency_ms, "p99"),
            _number(v.mean_batch),
            share(v.padding),
            _speedup(v),
            f"{v.texts:,}",
        )
        for v in report.variants
    ]
    m = report.meta
    return Table(
        "Per monitor and setting",
        (
            "monitor",
            "max batch",
            "texts/s",
            "texts/CPU-s",
            "p50 ms",
            "p99 ms",
            "mean batch",
            "padding",
            "speed-up",
            "texts",
        ),
        rows,
        f"{m.concurrency} concurrent single-text requests, {m.per_round} per round, "
        f"{m.repeats} interleaved repeats, max_wait {m.max_wait_ms:g} ms. Latency: submit to "
        "verdict, queue wait included, all repeats pooled. texts/CPU-s: per CPU-second of this "
        "process, which other tenants disturb less than wall time. padding: share of the tokens "
        f"the model computed that were padding (a batch pads to its longest text). {FEW_NOTE}",
    )


def all_tables(report: MonitorReport) -> list[Table]:
    return [headline_table(report), variants_table(report)]


def meta_lines(report: MonitorReport) -> list[str]:
    m = report.meta
    lines = [
        f"- date: {m.date}",
        f"- machine: {m.machine.cpu_count} CPUs, {m.machine.platform}, Python {m.machine.python}",
        f"- command: `{m.command}`",
        f"- monitors: {', '.join(m.monitors)}" + (f"; model: {m.model}" if m.model else ""),
        f"- texts: {m.texts} distinct"
        + (f", {m.tokens_mean:.0f} tokens mean ({m.tokens_max} max)" if m.tokens_mean is not None else ""),
    ]
    if m.torch is not None:
        lines.append(f"- torch {m.torch} with {m.torch_threads} threads")
    lines += [
        f"- this process used {m.cores_used:.2f} cores during the rounds; load avg 1 min "
        f"{m.load_avg_before[0]:.2f} before, {m.load_avg_after[0]:.2f} after",
        f"- interval: {m.ci_method}; wall time {m.wall_s:.0f} s",
    ]
    return lines + [f"- note: {note}" for note in m.notes]


def render_markdown(report: MonitorReport) -> str:
    first, *rest = all_tables(report)
    return "\n".join(
        [f"# {TITLE} report", "", md_table(first), "## Run", "", *meta_lines(report), "", *(md_table(t) for t in rest)]
    )


def render_html(report: MonitorReport) -> str:
    first, *rest = all_tables(report)
    meta = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in meta_lines(report))
    return html_page(
        f"{TITLE} report",
        html_table(first, "headline") + f"<h2>Run</h2><ul>{meta}</ul>" + "".join(html_table(t) for t in rest),
    )


def write_report(report: MonitorReport, out_dir: Path) -> list[Path]:
    return write_files(out_dir, report, render_markdown(report), render_html(report))
