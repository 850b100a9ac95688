"""``taxgate audit``: list, export (JSONL) and count the audit log's events.

It reads a SQLite file (``--db``) or the shared PostgreSQL log (``--dsn``, default from
``TAXGATE_AUDIT__DSN`` as the gateway reads it; a password is best left to PGPASSWORD or
~/.pgpass, so it does not show in the process list).

``gateway/cli.py`` calls ``configure_parser`` on its ``audit`` subparser and ``run`` with
the parsed arguments; ``python -m gateway.audit.cli`` runs it on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gateway.audit.dsn import is_dsn, redact_dsn
from gateway.audit.errors import AuditError
from gateway.audit.event import ACTIONS, GROUPS, STAGES, AuditEvent
from gateway.audit.filter import AuditFilter
from gateway.audit.query import count_events, iter_events
from gateway.audit.settings import AuditSettings

EXIT_OK = 0
EXIT_USAGE = 2
LIST_DEFAULT_LIMIT = 50
EXCERPT_WIDTH = 60
# Piped output is not wrapped at 80 columns: one event stays on one line for grep.
PIPE_WIDTH = 240
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
UNIX_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, *, now: float | None = None) -> float:
    """A time filter as unix seconds.

    Accepts a duration back from now (``90s``, ``15m``, ``2h``, ``1d``, ``1w``), an ISO 8601
    time (a time without offset is UTC, like the times ``list`` prints), or unix seconds.
    """
    text = value.strip()
    match = RELATIVE.match(text.lower())
    if match:
        current = time.time() if now is None else now
        return current - float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if UNIX_SECONDS.match(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: use an ISO time (2024-05-01T12:00:00Z) "
            "or a duration back from now (15m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _time_arg(value: str) -> float:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``audit`` arguments to ``parser``."""
    if not parser.description:
        parser.description = "Read the audit log: monitor verdicts other than pass."
    parser.add_argument(
        # Not "command": the top-level parser already stores the subcommand name there.
        "audit_command",
        metavar="{list,export,stats}",
        nargs="?",
        choices=("list", "export", "stats"),
        default="list",
        help="list: a table of the newest events (default); export: JSON Lines, one event "
        "per line; stats: event counts by monitor, stage and action",
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"the SQLite audit database, as in audit.path of the gateway settings (default: {AuditSettings().path})",
    )
    parser.add_argument(
        "--dsn",
        default=None,
        metavar="URL",
        help="the shared PostgreSQL audit log, as in audit.dsn of the gateway settings "
        "(postgresql://user@host:5432/db; default: $TAXGATE_AUDIT__DSN when --db is "
        "not given)",
    )
    # The filter flags: each one's dest is the AuditFilter field it sets (see _filter).
    parser.add_argument("--replica", help="only events written by this gateway replica")
    parser.add_argument("--monitor", help="only events from this monitor id")
    parser.add_argument("--stage", choices=STAGES, help="only events of this stage")
    parser.add_argument(
        "--action",
        choices=ACTIONS,
        help="only events where the gateway did this: block, redact or annotate (a hit "
        "enforced; block also for a failed on_error: closed monitor), shadow (a hit "
        "recorded, not enforced), error (a failed monitor whose text went through "
        "unchecked, e.g. on_error: open)",
    )
    parser.add_argument(
        "--errors",
        action="store_true",
        help="only verdicts of monitors that failed (error, timeout, overload), whatever the gateway then did",
    )
    parser.add_argument("--request-id", help="only events of this request id")
    parser.add_argument("--trace-id", help="only events of this OpenTelemetry trace id (32 hex digits)")
    parser.add_argument(
        "--since",
        type=_time_arg,
        metavar="TIME",
        help="only events at or after TIME: ISO 8601 (no offset means UTC) or a duration "
        "back from now such as 15m, 2h, 1d",
    )
    parser.add_argument(
        "--until",
        type=_time_arg,
        metavar="TIME",
        help="only events before TIME (same forms as --since)",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help=f"the newest N matching events (list: default {LIST_DEFAULT_LIMIT}; "
        "export: default all; stats counts every match)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="export: write the JSON Lines to FILE instead of stdout",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``taxgate audit``; returns the process exit code."""
    audit_filter = _filter(args)
    if args.db is not None and args.dsn is not None:
        print("taxgate audit: pass --db (a SQLite file) or --dsn (PostgreSQL), not both", file=sys.stderr)
        return EXIT_USAGE
    source = _source(args)
    if is_dsn(source):
        label = redact_dsn(source)
    elif source.startswith("postgres"):
        print(f"taxgate audit: --dsn {redact_dsn(source)!r} must start with postgresql://", file=sys.stderr)
        return EXIT_USAGE
    elif not os.path.isfile(source):
        print(
            f"taxgate audit: no audit database at {source!r}. Pass --db with the file "
            "named by audit.path in the gateway settings (the gateway creates it on start "
            "when audit.enabled is true), or --dsn for a PostgreSQL audit log.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    else:
        label = source
    try:
        if args.audit_command == "stats":
            _stats(source, label, audit_filter)
        elif args.audit_command == "export":
            _export(source, audit_filter, args.out)
        else:
            limit = audit_filter.limit or LIST_DEFAULT_LIMIT
            _list(source, label, dataclasses.replace(audit_filter, limit=limit))
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at devnull so the
        # interpreter's final flush does not raise again (the recipe in Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (AuditError, OSError) as exc:
        print(f"taxgate audit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _filter(args: argparse.Namespace) -> AuditFilter:
    return AuditFilter(**{field.name: getattr(args, field.name) for field in dataclasses.fields(AuditFilter)})


def _source(args: argparse.Namespace) -> str:
    if args.dsn is not None:
        return args.dsn
    if args.db is not None:
        return args.db
    return os.environ.get("TAXGATE_AUDIT__DSN") or AuditSettings().path


def _console() -> Console:
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _list(db: str, label: str, audit_filter: AuditFilter) -> None:
    table = Table(title=f"audit events in {escape(label)}")
    for name in ("time (UTC)", "request", "replica", "route", "model", "stage", "monitor", "action", "hit", "score"):
        table.add_column(name, no_wrap=True)
    table.add_column("labels")
    table.add_column("error")
    table.add_column("excerpt", max_width=EXCERPT_WIDTH, overflow="ellipsis", no_wrap=True)
    count = 0
    for event in iter_events(db, audit_filter):
        count += 1
        top = sorted(event.labels.items(), key=lambda item: item[1], reverse=True)[:3]
        cells = (
            _iso(event.ts),
            event.request_id,
            event.replica,
            event.route,
            event.model,
            event.stage,
            event.monitor,
            event.action,
            "yes" if event.hit else "no",
            f"{event.score:.3f}",
            " ".join(f"{name}={score:.2f}" for name, score in top),
            event.error or "",
            event.excerpt,
        )
        # Text, not str: excerpts are user and model text, and "[...]" must not be read
        # as rich markup (it would vanish or raise).
        table.add_row(*(Text(cell) for cell in cells))
    console = _console()
    if count:
        console.print(table)
    else:
        console.print(Text(f"no audit events match in {label}"))


def _export(db: str, audit_filter: AuditFilter, out: str | None) -> None:
    events = iter_events(db, audit_filter)
    if out is None:
        _write_jsonl(events, sys.stdout)
        return
    with open(out, "w", encoding="utf-8") as file:
        _write_jsonl(events, file)


def _write_jsonl(events: Iterable[AuditEvent], file: IO[str]) -> None:
    for event in events:
        file.write(orjson.dumps(dataclasses.asdict(event), option=orjson.OPT_APPEND_NEWLINE).decode())


def _stats(db: str, label: str, audit_filter: AuditFilter) -> None:
    console = _console()
    counts = {by: count_events(db, by, audit_filter) for by in GROUPS}
    total = sum(counts["stage"].values())
    console.print(Text(f"{total} audit event(s) in {label}"))
    for by, values in counts.items():
        if not values or (by == "replica" and list(values) == [""]):
            continue  # replica: nothing to say about a log no replica has signed
        table = Table(title=f"by {by}")
        table.add_column(by)
        table.add_column("events", justify="right")
        for value, count in values.items():
            table.add_row(Text(value), str(count))
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxgate audit")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
