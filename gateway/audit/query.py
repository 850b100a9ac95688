"""Reading the audit log back: from a SQLite file path or a ``postgresql://`` DSN.

The ``taxgate audit`` command reads through here. The SQL comes from one
``AuditFilter`` (``audit_filter.py``); a backend's ``AuditReader`` only connects, runs a
statement and decodes its rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.audit_filter import AuditFilter, Dialect, count_query, events_query
from gateway.audit_store import AuditError, AuditEvent, Group, is_dsn

EVERY = AuditFilter()  # no condition: the whole log


class AuditReader(Protocol):
    """The read side of one database, for ``taxgate audit``."""

    dialect: Dialect

    def missing_columns(self) -> frozenset[str]:
        """Columns of ``COLUMNS`` this database lacks (one written by an older release)."""

    def rows(self, sql: str, params: Sequence[object]) -> Iterator[Sequence[object]]:
        """Run ``sql`` now (so a missing or foreign database fails at the call, raising
        AuditError or FileNotFoundError) and stream its rows; the connection closes with
        the iterator."""

    def decode(self, row: Sequence[object]) -> AuditEvent:
        """The event of one row of ``events_query``."""


def open_reader(source: str | Path) -> AuditReader:
    """A reader for a SQLite file path or a ``postgresql://`` DSN."""
    if is_dsn(str(source)):
        from gateway.audit_postgres import PostgresReader

        return PostgresReader(str(source))
    from gateway.audit_sqlite import SQLiteReader

    return SQLiteReader(source)


def iter_events(source: str | Path, audit_filter: AuditFilter = EVERY
                ) -> Iterator[AuditEvent]:
    """Events matching ``audit_filter``, oldest first. The query runs at the call."""
    reader = open_reader(source)
    sql, params = events_query(audit_filter, reader.dialect, reader.missing_columns())
    return map(reader.decode, reader.rows(sql, params))


def query_events(source: str | Path, audit_filter: AuditFilter = EVERY
                 ) -> list[AuditEvent]:
    """``iter_events`` as a list."""
    return list(iter_events(source, audit_filter))


def count_events(source: str | Path, by: Group, audit_filter: AuditFilter = EVERY
                 ) -> dict[str, int]:
    """Events matching ``audit_filter`` counted per value of column ``by``, largest count
    first (``limit`` does not apply)."""
    reader = open_reader(source)
    sql, params = count_query(by, audit_filter, reader.dialect, reader.missing_columns())
    return {str(value): int(count) for value, count in reader.rows(sql, params)}


def run_query(conn: Any, cursor: Any, sql: str, params: Sequence[object], *,
              errors: type[Exception], source: str) -> Iterator[Sequence[object]]:
    """Execute on a DB-API ``cursor`` now, then stream its rows and close ``conn``.

    A failure (``errors``: the driver's base exception) closes ``conn`` and raises
    AuditError naming ``source`` (no password in it).
    """
    try:
        cursor.execute(sql, params)
    except errors as exc:
        conn.close()
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise AuditError(f"cannot query {source}: {detail}") from None
    return _stream(conn, cursor)


def _stream(conn: Any, cursor: Iterator[Sequence[object]]) -> Iterator[Sequence[object]]:
    try:
        yield from cursor
    finally:
        conn.close()
