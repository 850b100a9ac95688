"""The end-of-run summary on the terminal: the headline, the tax tables, where the report is."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from loadtest.bench.schema import Report
from loadtest.bench.tables import Table, headline_table, safety_table, tax_table


def rich_table(table: Table) -> RichTable:
    rich_table = RichTable(title=table.title, caption=table.caption, title_justify="left")
    for i, header in enumerate(table.headers):
        rich_table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i == 0)
    last_level = None
    for row in table.rows:
        # A rule between concurrency levels keeps wide tables readable.
        level = row[1] if len(row) > 1 else None
        if last_level is not None and level != last_level and table.headers[1] == "users":
            rich_table.add_section()
        last_level = level
        rich_table.add_row(*row)
    return rich_table


def print_summary(report: Report, console: Console, out_dir: Path) -> None:
    console.print(rich_table(tax_table(report, "direct", compact=True)))
    if any(t.baseline == "gateway" for t in report.tax):
        console.print(rich_table(tax_table(report, "gateway", compact=True)))
    if report.safety:
        console.print(rich_table(safety_table(report)))
    for level in report.levels:
        if level.flags:
            users = f"{level.concurrency} user{'' if level.concurrency == 1 else 's'}"
            console.print(
                f"[yellow]{users}: {', '.join(level.flags)}"
                f"{' (its tax is partly this machine)' if level.saturated else ''}"
                "[/] - see the saturation table in the report"
            )
    # Last, so it is what stays on the screen: one line per set a person can act on.
    if report.headline:
        console.print(rich_table(headline_table(report)))
    errors = sum(s.errors for s in report.scenarios)
    if errors:
        console.print(
            f"[yellow]{errors} request(s) failed during the rounds; see "
            f"report.md (errors column) and {out_dir / 'work' / 'logs'}[/]"
        )
    console.print(
        f"report: {out_dir / 'report.html'}  (also report.md, report.json, PNG plots) - {report.meta.wall_s:.0f} s"
    )
