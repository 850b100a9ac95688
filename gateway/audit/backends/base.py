"""What a backend implements: the writer side (``AuditBackend``), the read side
(``AuditReader``), and the DB-API query helper both readers share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from gateway.audit.errors import AuditError
from gateway.audit.event import AuditEvent
from gateway.audit.filter import Dialect


class AuditBackend(Protocol):
    """The writer side of one database. Called from the writer thread only."""

    #: Where the events go, for log lines and errors; never holds a password.
    name: str

    def open(self) -> None:
        """Connect and bring the schema to the latest version (versioned migrations).

        Raises AuditUnavailable when the database cannot be reached, AuditError otherwise.
        """

    def encode(self, event: AuditEvent) -> tuple[object, ...]:
        """The row for ``event``; raises TypeError/ValueError for an event it cannot store."""

    def write(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Commit ``rows`` in one transaction; AuditUnavailable means "reconnect and retry"."""

    def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` events older than unix time ``before``; the number deleted."""

    def close(self) -> None:
        """Close the connection (safe to call twice, or after a failed open)."""


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


def run_query(
    conn: Any, cursor: Any, sql: str, params: Sequence[object], *, errors: type[Exception], source: str
) -> Iterator[Sequence[object]]:
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
