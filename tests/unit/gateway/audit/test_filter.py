"""AuditFilter -> SQL: one statement for both databases, only the parameters spelled apart."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.audit.event import COLUMNS
from gateway.audit.filter import ACTION_SQL, POSTGRES, SQLITE, AuditFilter, count_query, events_query


def test_no_condition_no_where():
    assert AuditFilter().where(SQLITE) == ("", [])
    assert AuditFilter().where(POSTGRES) == ("", [])


def test_every_field_becomes_one_parametrized_condition():
    every = AuditFilter(
        request_id="r-1",
        stage="input",
        monitor="pii",
        action="redact",
        replica="gw-1",
        errors=True,
        since=5.0,
        until=9.5,
        limit=3,
    )
    where, params = every.where(POSTGRES)
    assert where == (
        " WHERE request_id = %s AND stage = %s AND monitor = %s"
        f" AND {ACTION_SQL} = %s AND replica = %s AND error IS NOT NULL"
        " AND ts >= to_timestamp(%s) AND ts < to_timestamp(%s)"
    )
    assert params == ["r-1", "input", "pii", "redact", "gw-1", 5.0, 9.5]
    sqlite_where, sqlite_params = every.where(SQLITE)
    assert sqlite_where == where.replace("to_timestamp(%s)", "?").replace("%s", "?")
    assert sqlite_params == params


def test_values_never_reach_the_sql_text():
    hostile = "x' OR 1=1 --"
    where, params = AuditFilter(monitor=hostile, request_id=hostile).where(SQLITE)
    assert hostile not in where and params == [hostile, hostile]


def test_events_query_newest_limit_then_oldest_first():
    sql, params = events_query(AuditFilter(monitor="pii", limit=2), SQLITE)
    select = ", ".join(ACTION_SQL + " AS action" if c == "action" else f"{c} AS {c}" for c in COLUMNS)
    assert sql == (
        f"SELECT * FROM (SELECT {select}, id FROM audit_events WHERE monitor = ?"
        " ORDER BY ts DESC, id DESC LIMIT ?) AS newest ORDER BY ts, id"
    )
    assert params == ["pii", 2]
    sql, params = events_query(AuditFilter(since=1.0), POSTGRES)
    assert sql == (f"SELECT {select}, id FROM audit_events WHERE ts >= to_timestamp(%s) ORDER BY ts, id")
    assert params == [1.0]


def test_count_query_groups_and_ignores_the_limit():
    sql, params = count_query("action", AuditFilter(stage="output", limit=5), POSTGRES)
    assert sql == (
        f"SELECT {ACTION_SQL} AS action, COUNT(*) FROM audit_events WHERE stage = %s GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    assert params == ["output"]
    with pytest.raises(ValueError, match="cannot group"):
        count_query("excerpt", AuditFilter(), SQLITE)  # type: ignore[arg-type]


def test_a_column_an_old_database_lacks_reads_as_empty():
    sql, params = events_query(AuditFilter(replica="gw-1"), SQLITE, missing={"replica"})
    assert "'' AS replica" in sql and "WHERE '' = ?" in sql and params == ["gw-1"]
    sql, _ = count_query("replica", AuditFilter(), SQLITE, missing={"replica"})
    assert sql.startswith("SELECT '' AS replica, COUNT(*)")


def test_the_filter_is_a_value():
    first = AuditFilter(monitor="pii", limit=10)
    assert first == AuditFilter(monitor="pii", limit=10) and hash(first) == hash(AuditFilter(monitor="pii", limit=10))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.monitor = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="limit"):
        AuditFilter(limit=0)
