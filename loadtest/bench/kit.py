"""What every ``taxgate bench`` measurement shares: flags, the round plan, the terminal.

The safety-tax run (``cli``), the monitors alone (``monitorcli``), the tax budget
(``budget``), the audit log (``audit``) and the soak (``soak``) take the same flags for the
same things (``--concurrency``, ``--duration``, ``--repeats``, ``--warmup``, ``--seed``,
``--ci``, ``--out``, ``--verbose``), order their rounds with one ``round_plan``, show one
progress bar, and unwind alike on Ctrl-C or SIGTERM. Their statistics are ``stats``, their
report files ``report.write_files``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadtest.bench.options import LevelPlan
from loadtest.bench.targets import redact_argv

# Libraries that log every request at INFO (the warm-up, the scrapes and the safety
# pass send hundreds), which would bury the progress bar.
CHATTY_LOGGERS = ("httpx", "httpcore", "urllib3", "matplotlib", "PIL")


def levels(text: str) -> tuple[int, ...]:
    """``"1,16,64"`` -> ``(1, 16, 64)``: the ``--concurrency`` type of every subcommand."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 1,16,64") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: levels must be positive integers")
    return values


def add_load_options(
    parser: argparse.ArgumentParser,
    *,
    concurrency: Sequence[int],
    duration_s: float,
    repeats: int,
    warmup_s: float,
    users: str = "concurrent clients",
) -> None:
    """``--concurrency``, ``--duration``, ``--repeats``, ``--warmup``, ``--seed``, ``--ci``:
    the flags the safety-tax run has, with this subcommand's defaults."""
    how = parser.add_argument_group("how long")
    how.add_argument(
        "--concurrency",
        type=levels,
        default=tuple(concurrency),
        metavar="N,N,...",
        help=f"{users} per level (default {','.join(map(str, concurrency))})",
    )
    how.add_argument(
        "--duration",
        type=float,
        default=duration_s,
        metavar="S",
        help=f"seconds of each round (default {duration_s:g})",
    )
    how.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        metavar="N",
        help=f"rounds per scenario and level, interleaved (default {repeats}; an interval needs >= 2)",
    )
    how.add_argument(
        "--warmup",
        type=float,
        default=warmup_s,
        metavar="S",
        help=f"seconds of untimed traffic first (default {warmup_s:g})",
    )
    how.add_argument("--seed", type=int, default=0, help="seed of the request mix and simulator")
    how.add_argument(
        "--ci",
        dest="ci_method",
        choices=["t", "bootstrap"],
        default="t",
        help="interval over repeats: Student t (default) or bootstrap",
    )


def add_output_options(parser: argparse.ArgumentParser, *, out: str) -> None:
    """``--out``, ``--ready-timeout``, ``--verbose``."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out",
        type=Path,
        default=Path(out),
        metavar="DIR",
        help=f"report folder: report.json, report.md, report.html, server logs (default ./{out})",
    )
    group.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="how long servers may take to become ready (default 180)",
    )
    group.add_argument(
        "--verbose", action="store_true", help="show the libraries' INFO logs (each HTTP request, ...) on the terminal"
    )


def check_load_options(args: argparse.Namespace) -> None:
    """The errors ``add_load_options``' flags can have, in words (ValueError)."""
    if args.duration <= 0:
        raise ValueError("--duration must be more than 0 seconds")
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")


def command_line() -> str:
    program = Path(sys.argv[0]).name
    if program == "__main__.py":  # python -m gateway bench / python -m loadtest.bench
        package = Path(sys.argv[0]).resolve().parent
        program = "python -m " + (package.name if package.name == "gateway" else "loadtest.bench")
    return " ".join([program, *(shlex.quote(a) for a in redact_argv(sys.argv[1:]))])


def quiet_logs(verbose: bool) -> None:
    """Warnings and errors only on the terminal unless ``--verbose``; our own INFO stays."""
    level = logging.INFO if verbose else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def terminate(signum, _frame) -> None:
    # SIGTERM (docker stop, CI timeouts) unwinds like Ctrl-C so the servers get stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def guarded(
    name: str, console: Console, work: Callable[[], int], usage_errors: tuple[type[Exception], ...] = (ValueError,)
) -> int:
    """Run ``work`` as a subcommand: SIGTERM unwinds like Ctrl-C (servers stopped), a usage
    error is status 2, a server that failed 1, an interrupt 130; each said in one line."""
    from loadtest.harness import ProcessError

    def error(message: str) -> None:  # paths and names may hold [brackets]: no markup
        console.print(f"{name}: {message}", style="red", markup=False, highlight=False)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return work()
    except usage_errors as exc:
        error(str(exc))
        return 2
    except ProcessError as exc:
        error(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print(f"{name}: interrupted; all servers it started are stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_bar(console: Console, *, counted: bool = True) -> Progress:
    """The bench's progress bar: what runs now, the bar, rounds done of all (``counted``),
    elapsed time."""
    columns = [TextColumn("{task.description}"), BarColumn()]
    if counted:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False)


def summary_console() -> Console:
    """Where a subcommand prints its tables: piped output (CI logs, tee) would otherwise be
    cut to 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=160)


class PhaseClock:
    """Wall time per phase of the run, for the report (where did the minutes go)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


def round_plan(names: list[str], levels: tuple[LevelPlan, ...]) -> list[tuple[int, LevelPlan, str]]:
    """``(repeat, level, scenario)`` in run order: interleaved, rotating the start.

    Repeat r runs every level that has an r-th repeat, each with every scenario once.
    Interleaving spreads slow drifts of the machine (thermal, other tenants, caches) over
    all scenarios alike; rotating the start keeps any one from always running first
    after a level change.
    """
    plan = []
    for repeat in range(max((level.repeats for level in levels), default=0)):
        shift = repeat % len(names)
        order = names[shift:] + names[:shift]
        for level in levels:
            if repeat < level.repeats:
                plan += [(repeat, level, name) for name in order]
    return plan


def simple_levels(concurrency: Sequence[int], repeats: int, duration_s: float) -> tuple[LevelPlan, ...]:
    """Timed rounds of ``duration_s`` at each level, ``repeats`` of each: the plan of the
    subcommands that have no profile."""
    return tuple(
        LevelPlan(users=users, repeats=repeats, requests=0, duration_s=max(1, round(duration_s)), stagger_s=0.0)
        for users in concurrency
    )


def machine_description() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def meta_lines(meta: dict) -> list[str]:
    """The "Run" list of a subcommand's report: when, where, how, how long."""
    machine = machine_description()
    lines = [
        f"- date: {meta['date']}",
        f"- machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python {machine['python']}",
        f"- command: `{meta['command']}`",
        f"- interval over repeats: {meta.get('ci_method', 't')}; wall time {meta['wall_s']:.0f} s",
    ]
    if meta.get("phases_s"):
        lines[-1] += " (" + ", ".join(f"{k} {v:.0f} s" for k, v in meta["phases_s"].items()) + ")"
    return lines


def print_table(console: Console, table) -> None:
    """One report ``tables.Table`` on the terminal."""
    from loadtest.bench.terminal import rich_table

    console.print(rich_table(table))
