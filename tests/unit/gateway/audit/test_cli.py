"""``taxgate audit``: list, export, stats, filters, time parsing and errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import time
from datetime import datetime, timezone

import pytest

from gateway.audit.cli import configure_parser, parse_time, run
from gateway.audit.event import AuditEvent
from tests.unit.gateway.audit.audit_log import write_events


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="taxgate audit")
    configure_parser(built)
    return built


def cli(*argv: str) -> int:
    return run(parser().parse_args(list(argv)))


@pytest.fixture
def db(tmp_path):
    """An audit log with events spread over the last three days."""
    path = str(tmp_path / "audit.db")
    now = time.time()
    events = [
        AuditEvent(
            "req-old",
            now - 3 * 86400,
            "input",
            "profanity",
            "block",
            True,
            0.97,
            {"profanity": 0.97},
            None,
            "you [REDACTED] idiot",
            "/v1/completions",
            "m",
        ),
        AuditEvent(
            "req-pii",
            now - 2 * 3600,
            "output",
            "pii",
            "redact",
            True,
            1.0,
            {"email": 1.0},
            None,
            "write to [REDACTED:EMAIL]",
            "/v1/chat/completions",
            "m",
        ),
        AuditEvent(
            "req-judge",
            now - 60,
            "output",
            "judge",
            "shadow",
            False,
            0.0,
            {},
            "judge answer unparseable",
            "",
            "/v1/chat/completions",
            "m",
        ),
    ]
    write_events(path, events)
    return path, events


def test_list_prints_a_table(db, capsys):
    path, _ = db
    assert cli("--db", path, "list") == 0
    out = capsys.readouterr().out
    for text in (
        "req-old",
        "req-pii",
        "req-judge",
        "profanity",
        "redact",
        "shadow",
        "[REDACTED:EMAIL]",
        "judge answer unparseable",
        "email=1.00",
    ):
        assert text in out


def test_list_shows_brackets_literally(tmp_path, capsys):
    path = str(tmp_path / "audit.db")
    excerpt = "[bold]not markup[/bold] [/] [REDACTED:EMAIL]"
    write_events(path, [AuditEvent("[req]", 1.0, "input", "[m]", "block", True, 1.0, {}, "[/x]", excerpt)])
    assert cli("--db", path) == 0
    out = capsys.readouterr().out
    for text in (excerpt, "[req]", "[m]", "[/x]"):
        assert text in out
    assert cli("--db", path, "stats") == 0
    assert "[m]" in capsys.readouterr().out


def test_list_is_the_default_and_filters_apply(db, capsys):
    path, _ = db
    assert cli("--db", path, "--monitor", "pii") == 0
    out = capsys.readouterr().out
    assert "req-pii" in out and "req-old" not in out and "req-judge" not in out
    assert cli("--db", path, "--stage", "output", "--action", "shadow") == 0
    out = capsys.readouterr().out
    assert "req-judge" in out and "req-pii" not in out
    assert cli("--db", path, "--request-id", "nope") == 0
    assert "no audit events match" in capsys.readouterr().out


def test_list_limit_keeps_the_newest(db, capsys):
    path, _ = db
    assert cli("--db", path, "list", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "req-judge" in out and "req-pii" not in out


def test_relative_since_and_until(db, capsys):
    path, _ = db
    assert cli("--db", path, "export", "--since", "1d") == 0
    ids = [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["req-pii", "req-judge"]
    assert cli("--db", path, "export", "--since", "3h", "--until", "30m") == 0
    ids = [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["req-pii"]


def test_export_jsonl_to_stdout_is_complete(db, capsys):
    path, events = db
    assert cli("--db", path, "export") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [dataclasses.asdict(e) for e in events]


def test_export_to_a_file(db, tmp_path, capsys):
    path, events = db
    out = tmp_path / "events.jsonl"
    assert cli("--db", path, "export", "--out", str(out), "--monitor", "judge") == 0
    assert capsys.readouterr().out == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [dataclasses.asdict(events[2])]


def test_stats_counts_by_monitor_stage_action(db, capsys):
    path, _ = db
    assert cli("--db", path, "stats") == 0
    out = capsys.readouterr().out
    assert "3 audit event(s)" in out
    for title in ("by monitor", "by stage", "by action"):
        assert title in out
    assert cli("--db", path, "stats", "--stage", "output") == 0
    out = capsys.readouterr().out
    assert "2 audit event(s)" in out and "profanity" not in out


@pytest.fixture
def failures(tmp_path):
    """A log with a hit, a monitor that failed open and one that failed closed."""
    path = str(tmp_path / "audit.db")
    now = time.time()
    events = [
        AuditEvent(
            "req-hit",
            now - 30,
            "input",
            "pii",
            "redact",
            True,
            1.0,
            {"email": 1.0},
            None,
            "[REDACTED:EMAIL]",
            "chat",
            "m",
        ),
        AuditEvent("req-open", now - 20, "input", "judge", "error", False, 0.0, {}, "timeout", "", "chat", "m"),
        AuditEvent("req-closed", now - 10, "output", "guard", "block", False, 0.0, {}, "error", "", "chat", "m"),
    ]
    write_events(path, events)
    return path


def exported(capsys) -> list[str]:
    return [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]


def test_fail_open_errors_are_filtered_by_their_action(failures, capsys):
    assert cli("--db", failures, "export", "--action", "error") == 0
    assert exported(capsys) == ["req-open"]
    assert cli("--db", failures, "list", "--action", "error") == 0
    out = capsys.readouterr().out
    assert "req-open" in out and "timeout" in out and "req-hit" not in out
    assert cli("--db", failures, "export", "--action", "block") == 0
    assert exported(capsys) == ["req-closed"]


def test_errors_selects_every_failed_monitor(failures, capsys):
    assert cli("--db", failures, "export", "--errors") == 0
    assert exported(capsys) == ["req-open", "req-closed"]
    assert cli("--db", failures, "export", "--errors", "--stage", "output") == 0
    assert exported(capsys) == ["req-closed"]
    assert cli("--db", failures, "stats", "--errors") == 0
    out = capsys.readouterr().out
    assert "2 audit event(s)" in out and "error" in out and "pii" not in out


def test_unknown_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["--action", "pass"])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err  # the choices are listed


def test_missing_db_is_a_clear_error(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.db")
    for command in ("list", "export", "stats"):
        assert cli("--db", missing, command) == 2
        err = capsys.readouterr().err
        assert "no audit database" in err and missing in err
        assert "--db" in err and "audit.path" in err


def test_unwritable_out_file_is_reported_as_such(db, tmp_path, capsys):
    path, _ = db
    out = tmp_path / "no-such-dir" / "events.jsonl"
    assert cli("--db", path, "export", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "no-such-dir" in err and "no audit database" not in err


def test_foreign_sqlite_file_is_a_clear_error(tmp_path, capsys):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert cli("--db", str(other), "list") == 2
    assert "not a readable taxgate audit database" in capsys.readouterr().err


def test_works_as_a_subcommand_of_taxgate(db, capsys):
    # Like gateway/cli.py: the top-level parser keeps the subcommand name in "command".
    top = argparse.ArgumentParser(prog="taxgate")
    sub = top.add_subparsers(dest="command", required=True)
    configure_parser(sub.add_parser("audit"))
    path, _ = db
    args = top.parse_args(["audit", "--db", path, "stats"])
    assert args.command == "audit"
    assert run(args) == 0
    assert "3 audit event(s)" in capsys.readouterr().out


def test_every_flag_has_help():
    for action in parser()._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"


def test_bad_time_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["--since", "yesterday-ish"])
    assert exit_info.value.code == 2
    assert "15m" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds_back"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1.5h", 5400), (" 10M ", 600)],
)
def test_parse_relative_time(text, seconds_back):
    assert parse_time(text, now=1_000_000.0) == 1_000_000.0 - seconds_back


def test_parse_absolute_time():
    expected = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    assert parse_time("2024-05-01T12:00:00Z") == expected
    assert parse_time("2024-05-01T12:00:00") == expected  # no offset: UTC
    assert parse_time("2024-05-01T14:00:00+02:00") == expected
    assert parse_time(str(expected)) == expected  # unix seconds
    assert parse_time("2024-05-01") == datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("text", ["", "m", "-5m", "5 minutes", "2024-13-01", "nan"])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text)
