"""The report of a bench run: ``report.json`` (validated), ``report.md``, ``report.html``.

``build_report`` turns the runner's result into the validated ``Report`` model (pure
apart from reading the run's metadata); the writers render it. The HTML file is
self-contained: plots are embedded as base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import random
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from pydantic import BaseModel

from loadtest.bench import schema
from loadtest.bench.aggregate import CellStats, Latencies
from loadtest.bench.cpu import (
    BENCH,
    GATEWAY,
    LOAD_BUSIEST,
    LOAD_GENERATOR,
    MACHINE,
    UPSTREAM,
    saturation_flags,
)
from loadtest.bench.headline import headline_level, headline_rows, level_summaries
from loadtest.bench.plots import PARETO_PLOT
from loadtest.bench.routes import PATHS as ROUTE_PATHS
from loadtest.bench.safety import Rates, SafetyResult
from loadtest.bench.stats import Estimate, Percentiles
from loadtest.bench.tables import Table, all_tables
from loadtest.bench.targets import target_rows
from loadtest.bench.tax import TaxRow, tax_rows

if TYPE_CHECKING:
    from loadtest.bench.runner import BenchResult

REPORT_FILES = ("report.json", "report.md", "report.html")


def _ms(p: Percentiles | None, n: int) -> schema.Percentiles | None:
    if p is None:
        return None
    return schema.Percentiles(**p.scaled(1000.0).as_dict(), n=n, p99_supported=n >= schema.P99_MIN_SAMPLES)


def _interval(e: Estimate) -> schema.Interval:
    return schema.Interval(value=e.value, ci_low=e.low, ci_high=e.high, n=e.n)


def _deltas(row: TaxRow, metric: str) -> schema.DeltaPercentiles | None:
    per_pct = row.deltas_ms.get(metric)
    if not per_pct or len(per_pct) < 3:
        return None
    n = row.counts.get(metric, 0)
    return schema.DeltaPercentiles(
        **{k: _interval(v) for k, v in per_pct.items()}, n_min=n, p99_supported=n >= schema.P99_MIN_SAMPLES
    )


def _latency_fields(lat: Latencies) -> dict:
    return {f"{m}_ms": _ms(lat.metric(m), lat.count(m)) for m in ("ttft", "itl", "e2e", "tpot")}


_PARTS = (LOAD_GENERATOR, LOAD_BUSIEST, UPSTREAM, GATEWAY, BENCH, MACHINE)


def _cell_flags(cell: CellStats, cpu_count: int) -> list[str]:
    return saturation_flags({part: cell.cores(part) for part in _PARTS}, cpu_count)


def _cores(cell: CellStats) -> dict[str, float | None]:
    return {part: cell.cores(part) for part in _PARTS if cell.cores(part) is not None}


def _examples(cell) -> list[str]:
    return list(dict.fromkeys(e for r in cell.rounds for e in r.error_examples))[:3]


def _rates(rates: Rates) -> dict:
    """The fields of ``schema.SafetyRates`` from one table of verdict counts."""
    harmful, false_positive = rates.harmful_interval(), rates.benign_interval()
    return dict(
        n=rates.n,
        errors=rates.errors,
        catch_rate=rates.catch_rates(),
        harmful_catch_rate=rates.harmful_catch_rate(),
        harmful_ci95=list(harmful) if harmful else None,
        false_positive_rate=rates.false_positive_rate(),
        false_positive_ci95=list(false_positive) if false_positive else None,
        false_block_rate=rates.benign_share(("blocked",)),
        false_alter_rate=rates.benign_share(("altered",)),
        false_flag_rate=rates.benign_share(("flagged",)),
        ci95={label: list(interval) for label, interval in rates.intervals().items()},
        counts={label: dict(counts) for label, counts in sorted(rates.counts.items())},
    )


def _safety_row(result: SafetyResult, notes: list[str]) -> schema.SafetyRow:
    return schema.SafetyRow(
        scenario=result.scenario,
        **_rates(result.rates),
        sources=[
            schema.SafetySourceRow(source=source, **_rates(rates)) for source, rates in result.source_rates().items()
        ],
        error_examples=result.error_examples,
        elapsed_s=result.elapsed_s,
        notes=[*notes, *result.notes],
    )


def build_report(result: BenchResult, machine: dict) -> schema.Report:
    options = result.options
    names = [s.name for s in result.scenarios]
    by_name = {s.name: s for s in result.scenarios}
    cpu_count = int(machine.get("cpu_count") or 1)
    flags = {key: _cell_flags(cell, cpu_count) for key, cell in result.cells.items()}
    scenario_rows = [
        schema.ScenarioRow(
            name=cell.scenario,
            description=by_name[cell.scenario].description,
            concurrency=cell.concurrency,
            **_latency_fields(cell.pooled),
            output_tokens_per_s=cell.throughput.output_tokens_per_s,
            requests_per_s=cell.throughput.requests_per_s,
            requests=cell.requests,
            errors=cell.errors,
            blocked=cell.blocked,
            rounds=len(cell.rounds),
            error_examples=_examples(cell),
            notes=list(by_name[cell.scenario].notes),
            cpu_cores=_cores(cell),
            gateway_cpu_s_per_1k_tokens=cell.gateway_cpu_s_per_1k_tokens,
            flags=flags[(cell.scenario, cell.concurrency)],
        )
        for level in options.concurrency
        for name in names
        if (cell := result.cells.get((name, level))) is not None
    ]
    targets = [t.target.name for t in result.targets]
    rows = tax_rows(result.cells, names, options.concurrency, options.ci_method, random.Random(options.seed), targets)
    tax = [
        schema.TaxRow(
            scenario=row.scenario,
            baseline=row.baseline,
            concurrency=row.concurrency,
            ttft_ms=_deltas(row, "ttft"),
            itl_ms=_deltas(row, "itl"),
            e2e_ms=_deltas(row, "e2e"),
            tpot_ms=_deltas(row, "tpot"),
            throughput_ratio=_interval(row.throughput_ratio),
            cpu_s_per_1k_tokens=(_interval(row.cpu_s_per_1k_tokens) if row.cpu_s_per_1k_tokens is not None else None),
            flags=sorted(set(flags[(row.scenario, row.concurrency)]) | set(flags[(row.baseline, row.concurrency)])),
        )
        for row in rows
    ]
    safety = [_safety_row(result.safety[name], list(by_name[name].notes)) for name in names if name in result.safety]
    timings = [
        schema.MonitorTiming(scenario=name, metric=t.metric, labels=t.labels, count=t.count, mean_ms=t.mean_ms)
        for name in names
        for t in result.timings.get(name, [])
    ]
    notes = list(result.notes)
    notes += [f"{s.name}: {note}" for s in result.scenarios for note in s.notes]
    notes.append(
        f"load rounds send only items labelled {options.load_labels!r}, so every scenario carries the same traffic"
    )
    if options.safety:
        notes.append(
            f"safety pass: every dataset item once per monitor set, through gateways in front of "
            f"the built-in simulator in echo mode{' (not --upstream)' if options.upstream else ''}: the "
            f"answer repeats the prompt, so input and output monitors see the labelled text and the "
            f"rates measure the monitor sets, not a model; "
            f"{'streamed' if options.safety_stream else 'not streamed'}, "
            f"max_tokens {options.safety_max_tokens}"
        )
    meta = schema.Meta(
        date=result.started_at.isoformat(timespec="seconds"),
        machine=schema.Machine(**machine),
        command=options.command,
        upstream_kind=result.upstream_kind,
        model=result.model,
        route=options.route,
        profile=options.profile_name,
        concurrency=list(options.concurrency),
        plan=[
            schema.PlanLevel(
                users=p.users, repeats=p.repeats, requests=p.requests, duration_s=p.duration_s, stagger_s=p.stagger_s
            )
            for p in options.plans
        ],
        warmup_s=options.warmup_s,
        max_tokens=options.max_tokens,
        load_labels=options.load_labels,
        seed=options.seed,
        ci_method=options.ci_method,
        wall_s=result.wall_s,
        phases_s=result.phases_s,
        notes=notes,
        missing=list(result.missing),
    )
    levels = level_summaries(scenario_rows)
    level = headline_level(levels)
    return schema.Report(
        meta=meta,
        headline_concurrency=level,
        headline=headline_rows(tax, safety, scenario_rows, level, targets),
        levels=levels,
        scenarios=scenario_rows,
        tax=tax,
        safety=safety,
        monitor_timings=timings,
        targets=target_rows(result.targets),
    )


def write_json(report: BaseModel | dict, path: Path) -> None:
    data = report.model_dump(mode="json") if isinstance(report, BaseModel) else report
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def md_table(table: Table) -> str:
    lines = [f"## {table.title}", ""]
    if table.caption:
        lines += [table.caption, ""]
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _meta_lines(report: schema.Report) -> list[str]:
    m = report.meta
    return (
        [
            f"- date: {m.date}",
            f"- machine: {m.machine.cpu_count} CPUs, {m.machine.platform}, Python {m.machine.python}",
            f"- command: `{m.command}`",
            f"- upstream: {m.upstream_kind}; model `{m.model}`; route {m.route} (streamed "
            f"{ROUTE_PATHS.get(m.route, m.route)})",
            f"- profile {m.profile}: "
            + "; ".join(_plan_text(p) for p in m.plan)
            + f"; interleaved; warm-up {m.warmup_s:g} s; max_tokens {m.max_tokens}; "
            f"interval: {m.ci_method}",
            f"- wall time: {m.wall_s:.0f} s ("
            + ", ".join(f"{name} {secs:.0f} s" for name, secs in m.phases_s.items())
            + ")",
        ]
        + [f"- note: {note}" for note in m.notes]
        + [f"- MISSING: {what}" for what in m.missing]
    )


def _plan_text(p: schema.PlanLevel) -> str:
    size = f"{p.requests} requests" if p.requests else f"{p.duration_s} s"
    return f"{p.users} user{'s' if p.users > 1 else ''}: {p.repeats} rounds of {size}"


def _split(report: schema.Report, plots: list[Path]):
    """(headline tables, the rest; the headline plot, the rest): the report opens with them."""
    tables = all_tables(report)
    first = [t for t in tables if t.title.startswith("Headline")]
    pareto = [p for p in plots if p.name == PARETO_PLOT]
    return (first, [t for t in tables if t not in first], pareto, [p for p in plots if p not in pareto])


def render_markdown(report: schema.Report, plots: list[Path]) -> str:
    first, rest, pareto, other_plots = _split(report, plots)
    parts = ["# taxgate bench report", ""]
    parts += [md_table(table) for table in first]
    parts += [f"![{p.stem}]({p.name})\n" for p in pareto]
    parts += ["## Run", "", *_meta_lines(report), ""]
    parts += [md_table(table) for table in rest]
    if other_plots:
        parts.append("## Plots\n")
        parts += [f"![{p.stem}]({p.name})\n" for p in other_plots]
    return "\n".join(parts)


def html_table(table: Table, css_id: str = "") -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    caption = f"<p class='cap'>{esc(table.caption)}</p>" if table.caption else ""
    ident = f" id='{css_id}'" if css_id else ""
    return f"<h2>{esc(table.title)}</h2>{caption}<table{ident}><tr>{head}</tr>{body}</table>"


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}
.cap{color:#555;margin:.2em 0}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
"""


def _img(p: Path) -> str:
    esc = html.escape
    return (
        f"<h3>{esc(p.stem.replace('_', ' '))}</h3><img alt='{esc(p.stem)}' "
        f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
    )


def render_html(report: schema.Report, plots: list[Path]) -> str:
    esc = html.escape
    first, rest, pareto, other_plots = _split(report, plots)
    meta = "".join(f"<li>{esc(line.removeprefix('- '))}</li>" for line in _meta_lines(report))
    head = "".join(html_table(t, "headline") for t in first) + "".join(map(_img, pareto))
    tables = "".join(html_table(t) for t in rest)
    images = "".join(map(_img, other_plots))
    return html_page(
        "taxgate bench report",
        f"{head}<h2>Run</h2><ul>{meta}</ul>{tables}{'<h2>Plots</h2>' + images if images else ''}",
    )


def html_page(title: str, body: str) -> str:
    """A self-contained page: ``body`` under an ``<h1>`` of ``title``, with the report's style."""
    esc = html.escape
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>"
    )


def write_files(out_dir: Path, report: BaseModel | dict, markdown: str, html_text: str) -> list[Path]:
    """report.json (the validated model), report.md and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, html_path = (out_dir / name for name in REPORT_FILES)
    write_json(report, json_path)
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(html_text, encoding="utf-8")
    return [json_path, md_path, html_path]


def write_report(report: schema.Report, out_dir: Path, plots: list[Path]) -> list[Path]:
    """Write report.json, report.md and report.html into ``out_dir``; return their paths."""
    return write_files(out_dir, report, render_markdown(report, plots), render_html(report, plots))


def write_table_report(
    out_dir: Path, title: str, payload: BaseModel | dict, tables: list[Table], lines: list[str], images: list[Path] = ()
) -> list[Path]:
    """A subcommand's report: ``payload`` as report.json, and report.md / report.html with
    ``lines`` (a headline, then the run's "- key: value" lines), ``tables`` and ``images``."""
    head = [line for line in lines if not line.startswith("- ")]
    run = [line for line in lines if line.startswith("- ")]
    markdown = "\n".join(
        [
            f"# {title} report",
            "",
            *head,
            "",
            "## Run",
            "",
            *run,
            "",
            *(md_table(t) for t in tables),
            *(f"![{p.stem}]({p.name})\n" for p in images),
        ]
    )
    esc = html.escape
    body = (
        "".join(f"<p>{esc(line)}</p>" for line in head)
        + "<h2>Run</h2><ul>"
        + "".join(f"<li>{esc(line.removeprefix('- '))}</li>" for line in run)
        + "</ul>"
        + "".join(html_table(t) for t in tables)
        + "".join(_img(p) for p in images if p.exists())
    )
    return write_files(out_dir, payload, markdown, html_page(f"{title} report", body))
