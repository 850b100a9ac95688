"""What every audit backend provides: the event, the filters, and the backend protocols.

``gateway/audit.py`` owns the queue and the writer thread and talks to one ``AuditBackend``
(SQLite in ``audit_sqlite.py``, PostgreSQL in ``audit_postgres.py``); the ``taxgate audit``
command reads through an ``AuditReader``. Neither the pipeline nor the proxy knows which
backend runs. A backend's methods are blocking: they run on the writer thread (or in the CLI),
never on the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

COLUMNS = ("request_id", "ts", "stage", "monitor", "action", "hit", "score", "labels",
           "error", "excerpt", "route", "model", "replica")
GROUPS = ("monitor", "stage", "action", "replica")
Group = Literal["monitor", "stage", "action", "replica"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One monitor verdict. ``excerpt`` must already be masked by the caller.

    ``route`` is the gateway route (``chat`` / ``completions``), ``model`` the requested
    model, ``replica`` the gateway replica that wrote it (``audit.replica``, default the
    host name, which is the pod name on Kubernetes).
    """

    request_id: str
    ts: float  # unix time, seconds
    stage: str
    monitor: str  # the configured monitor id
    action: str  # the configured action: block | redact | annotate | shadow
    hit: bool
    score: float
    labels: dict[str, float]
    error: str | None
    excerpt: str
    route: str = ""
    model: str = ""
    replica: str = ""


class AuditError(RuntimeError):
    """The audit database cannot be opened, written or read."""


class AuditUnavailable(AuditError):
    """The database cannot be reached right now (down, restarting, network): worth a retry."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Every given value must match; ``since`` <= ts < ``until``."""

    monitor: str | None = None
    stage: str | None = None
    action: str | None = None
    request_id: str | None = None
    replica: str | None = None
    since: float | None = None
    until: float | None = None

    def clauses(self, placeholder: str, time_placeholder: str | None = None
                ) -> tuple[str, list[object]]:
        """`` WHERE ...`` (or ``""``) and its parameters, for ``placeholder`` (``?``/``%s``);
        ``time_placeholder`` wraps the unix-time parameters (PostgreSQL: ``to_timestamp(%s)``).

        Column names come from this class, never from the caller, so the SQL is fixed.
        """
        at = time_placeholder or placeholder
        clauses, params = [], []
        for column in ("monitor", "stage", "action", "request_id", "replica"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {placeholder}")
                params.append(value)
        if self.since is not None:
            clauses.append(f"ts >= {at}")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"ts < {at}")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


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
    """The read side, for ``taxgate audit``."""

    def iter_events(self, filters: Filters, limit: int | None) -> Iterator[AuditEvent]:
        """Matches oldest first; with ``limit`` the newest ``limit`` matches (like ``tail``)."""

    def count_events(self, by: Group, filters: Filters) -> dict[str, int]:
        """Matches counted per value of column ``by``, largest count first."""


DSN_SCHEMES = ("postgresql://", "postgres://")
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def is_dsn(source: str) -> bool:
    """Whether ``source`` names a PostgreSQL database rather than a SQLite file."""
    return source.startswith(DSN_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` fit for a log line: any password replaced by ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", dsn))
