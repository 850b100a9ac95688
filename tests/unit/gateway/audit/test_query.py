"""Reading the SQLite audit log back: every filter, counts, fail-open errors, old rows."""

from __future__ import annotations

import math
import sqlite3

import pytest

from gateway.audit.errors import AuditError
from gateway.audit.event import AuditEvent
from gateway.audit.filter import AuditFilter
from gateway.audit.query import count_events, query_events
from tests.unit.gateway.audit.audit_log import write_events


def event(n: int, monitor: str, stage: str, action: str, **overrides) -> AuditEvent:
    fields = dict(
        request_id=f"req-{n}",
        ts=1_700_000_000.0 + n,
        stage=stage,
        monitor=monitor,
        action=action,
        hit=True,
        score=0.25 + n / 10_000,
        labels={"email": 0.9},
        error=None,
        excerpt=f"mail me at [REDACTED:EMAIL] #{n}",
        route="chat",
        model="tiny",
        replica="gw-0",
    )
    fields.update(overrides)
    return AuditEvent(**fields)


FAILED = {"hit": False, "score": 0.0, "labels": {}, "excerpt": ""}


@pytest.fixture
def filled(tmp_path):
    path = str(tmp_path / "audit.db")
    events = [
        event(0, "pii", "input", "redact"),
        event(1, "pii", "output", "redact", replica="gw-1"),
        event(2, "profanity", "input", "block"),
        event(3, "judge", "output", "shadow", request_id="req-x", trace_id="ab" * 16, span_id="cd" * 8),
        event(4, "judge", "input", "shadow", request_id="req-x"),
        event(5, "judge", "input", "error", error="timeout", **FAILED),  # failed open
        event(6, "guard", "input", "block", error="overload", **FAILED),  # failed closed
    ]
    write_events(path, events)
    return path, events


def test_query_filters(filled):
    path, events = filled
    assert query_events(path) == events
    assert query_events(path, AuditFilter(monitor="pii")) == events[:2]
    assert query_events(path, AuditFilter(stage="output")) == [events[1], events[3]]
    assert query_events(path, AuditFilter(action="shadow", stage="input")) == [events[4]]
    assert query_events(path, AuditFilter(request_id="req-x")) == events[3:5]
    assert query_events(path, AuditFilter(replica="gw-1")) == [events[1]]
    assert query_events(path, AuditFilter(trace_id="ab" * 16)) == [events[3]]
    assert events[3].span_id == "cd" * 8 and events[0].trace_id == ""
    assert query_events(path, AuditFilter(since=events[1].ts, until=events[3].ts)) == events[1:3]
    assert query_events(path, AuditFilter(limit=2)) == events[5:]  # the newest, oldest first
    assert query_events(path, AuditFilter(monitor="judge", limit=2)) == events[4:6]
    assert query_events(path, AuditFilter(monitor="nope")) == []


def test_fail_open_errors_have_their_own_action_and_every_error_one_filter(filled):
    path, events = filled
    assert query_events(path, AuditFilter(action="error")) == [events[5]]
    assert query_events(path, AuditFilter(errors=True)) == events[5:]
    assert query_events(path, AuditFilter(action="block")) == [events[2], events[6]]
    assert query_events(path, AuditFilter(action="block", errors=True)) == [events[6]]


def test_count_events(filled):
    path, _ = filled
    assert count_events(path, "monitor") == {"judge": 3, "pii": 2, "guard": 1, "profanity": 1}
    assert count_events(path, "stage", AuditFilter(monitor="judge")) == {"input": 2, "output": 1}
    assert count_events(path, "action") == {"block": 2, "redact": 2, "shadow": 2, "error": 1}
    assert count_events(path, "action", AuditFilter(errors=True)) == {"block": 1, "error": 1}
    # A count is of every match: limit bounds a listing only.
    assert count_events(path, "monitor", AuditFilter(monitor="judge", limit=1)) == {"judge": 3}
    with pytest.raises(ValueError):
        count_events(path, "excerpt")


def test_fail_open_rows_written_as_pass_read_as_error(filled):
    # What a gateway from before the `error` action (or one not yet upgraded) wrote.
    path, events = filled
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE audit_events SET action = 'pass' WHERE request_id = 'req-5'")
    conn.close()
    assert query_events(path) == events
    assert query_events(path, AuditFilter(action="error")) == [events[5]]
    assert count_events(path, "action", AuditFilter(monitor="judge")) == {"shadow": 2, "error": 1}


def test_nan_score_reads_back_as_nan(tmp_path):
    path = str(tmp_path / "audit.db")
    write_events(path, [event(0, "pii", "input", "redact", score=math.nan)])
    assert math.isnan(query_events(path)[0].score)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        query_events(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(AuditError, match="not a readable taxgate audit database"):
        query_events(other)
