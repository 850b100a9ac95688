"""Reading the audit log back: from a SQLite file path or a ``postgresql://`` DSN.

The ``taxgate audit`` command reads through here. The SQL comes from one
``AuditFilter`` (``filter.py``); a backend's ``AuditReader`` (``backends/``) only connects,
runs a statement and decodes its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gateway.audit.backends import open_reader
from gateway.audit.event import AuditEvent, Group
from gateway.audit.filter import AuditFilter, count_query, events_query

EVERY = AuditFilter()  # no condition: the whole log


def iter_events(source: str | Path, audit_filter: AuditFilter = EVERY) -> Iterator[AuditEvent]:
    """Events matching ``audit_filter``, oldest first. The query runs at the call."""
    reader = open_reader(source)
    sql, params = events_query(audit_filter, reader.dialect, reader.missing_columns())
    return map(reader.decode, reader.rows(sql, params))


def query_events(source: str | Path, audit_filter: AuditFilter = EVERY) -> list[AuditEvent]:
    """``iter_events`` as a list."""
    return list(iter_events(source, audit_filter))


def count_events(source: str | Path, by: Group, audit_filter: AuditFilter = EVERY) -> dict[str, int]:
    """Events matching ``audit_filter`` counted per value of column ``by``, largest count
    first (``limit`` does not apply)."""
    reader = open_reader(source)
    sql, params = count_query(by, audit_filter, reader.dialect, reader.missing_columns())
    return {str(value): int(count) for value, count in reader.rows(sql, params)}
