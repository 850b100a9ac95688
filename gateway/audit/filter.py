"""Which audit events to read: one filter value, and the SQL it stands for.

``AuditFilter`` is what ``taxgate audit`` builds from its flags and what every reader takes;
``events_query`` / ``count_query`` turn it into one parametrized statement for either
database. The dialects differ only in how a parameter is written (``Dialect``); column
names come from this module, never from the caller, so the SQL text is fixed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gateway.audit.event import COLUMNS, GROUPS, Group


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells a parameter: any value, and a unix time (``ts`` is a REAL in
    SQLite, a TIMESTAMPTZ in PostgreSQL)."""

    placeholder: str
    time_placeholder: str


SQLITE = Dialect("?", "?")
POSTGRES = Dialect("%s", "to_timestamp(%s)")

# Before fail-open errors were recorded as ``error``, they were written as ``pass`` (and a
# replica still on that release writes so during a rolling upgrade): such rows read, filter
# and count as ``error`` too. Clean passes are never audited, so nothing else is ``pass``.
ACTION_SQL = "CASE WHEN action = 'pass' AND error IS NOT NULL THEN 'error' ELSE action END"


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Events matching every given field, oldest first; ``since`` <= ts < ``until``.

    ``errors``: only verdicts of monitors that failed (whatever the gateway then did).
    ``limit``: the newest ``limit`` matches (still oldest first), like ``tail``; counts
    ignore it.
    """

    request_id: str | None = None
    stage: str | None = None
    monitor: str | None = None
    action: str | None = None
    replica: str | None = None
    trace_id: str | None = None
    errors: bool = False
    since: float | None = None
    until: float | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be 1 or more, not {self.limit}")

    def where(self, dialect: Dialect, missing: Collection[str] = ()) -> tuple[str, list[object]]:
        """`` WHERE ...`` (or ``""``) and its parameters.

        ``missing``: columns an old database lacks, read as ``''`` (their default since).
        """
        clauses: list[str] = []
        params: list[object] = []
        for column in ("request_id", "stage", "monitor", "action", "replica", "trace_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{_column(column, missing)} = {dialect.placeholder}")
                params.append(value)
        if self.errors:
            clauses.append("error IS NOT NULL")
        if self.since is not None:
            clauses.append(f"ts >= {dialect.time_placeholder}")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"ts < {dialect.time_placeholder}")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def events_query(
    audit_filter: AuditFilter, dialect: Dialect, missing: Collection[str] = ()
) -> tuple[str, list[object]]:
    """The matching events: the columns of ``COLUMNS`` in order, then ``id``."""
    where, params = audit_filter.where(dialect, missing)
    select = ", ".join(f"{_column(column, missing)} AS {column}" for column in COLUMNS)
    sql = f"SELECT {select}, id FROM audit_events{where}"
    if audit_filter.limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, id DESC LIMIT {dialect.placeholder}) AS newest"
        params.append(audit_filter.limit)
    return sql + " ORDER BY ts, id", params


def count_query(
    by: Group, audit_filter: AuditFilter, dialect: Dialect, missing: Collection[str] = ()
) -> tuple[str, list[object]]:
    """(value of ``by``, count) for the matching events, largest count first."""
    if by not in GROUPS:
        raise ValueError(f"cannot group audit events by {by!r}")
    where, params = audit_filter.where(dialect, missing)
    sql = f"SELECT {_column(by, missing)} AS {by}, COUNT(*) FROM audit_events{where} GROUP BY 1 ORDER BY 2 DESC, 1"
    return sql, params


def _column(name: str, missing: Collection[str]) -> str:
    if name in missing:
        return "''"
    return ACTION_SQL if name == "action" else name
