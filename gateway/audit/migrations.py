"""Versioned schema migrations for the audit log, one list per SQL dialect.

A migration is applied once, in order, inside the transaction that records its version:
SQLite keeps the version in ``PRAGMA user_version``, PostgreSQL in ``taxgate_audit_schema``
under an advisory lock, so replicas starting together migrate once. Migrations only add
(tables, columns with defaults, indexes): a replica still on the previous release keeps
writing while the next one rolls out. Never edit a released migration; append one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


SQLITE: tuple[Migration, ...] = (
    Migration(
        1,
        "audit_events with indexes on ts, monitor, request_id",
        (
            """CREATE TABLE IF NOT EXISTS audit_events (
            id         INTEGER PRIMARY KEY,
            request_id TEXT    NOT NULL,
            ts         REAL    NOT NULL,
            stage      TEXT    NOT NULL,
            monitor    TEXT    NOT NULL,
            action     TEXT    NOT NULL,
            hit        INTEGER NOT NULL,
            score      REAL,
            labels     TEXT    NOT NULL,
            error      TEXT,
            excerpt    TEXT    NOT NULL,
            route      TEXT    NOT NULL DEFAULT '',
            model      TEXT    NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts)",
            "CREATE INDEX IF NOT EXISTS audit_events_monitor ON audit_events (monitor)",
            "CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id)",
        ),
    ),
    Migration(
        2,
        "replica column: which gateway wrote the event",
        ("ALTER TABLE audit_events ADD COLUMN replica TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        3,
        "trace_id and span_id columns: the request's OpenTelemetry trace",
        (
            "ALTER TABLE audit_events ADD COLUMN trace_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit_events ADD COLUMN span_id TEXT NOT NULL DEFAULT ''",
        ),
    ),
)

POSTGRES: tuple[Migration, ...] = (
    Migration(
        1,
        "audit_events with indexes on ts, monitor, request_id",
        (
            """CREATE TABLE IF NOT EXISTS audit_events (
            id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id TEXT             NOT NULL,
            ts         TIMESTAMPTZ      NOT NULL,
            stage      TEXT             NOT NULL,
            monitor    TEXT             NOT NULL,
            action     TEXT             NOT NULL,
            hit        BOOLEAN          NOT NULL,
            score      DOUBLE PRECISION,
            labels     JSONB            NOT NULL,
            error      TEXT,
            excerpt    TEXT             NOT NULL,
            route      TEXT             NOT NULL DEFAULT '',
            model      TEXT             NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts)",
            # Monitor and time together: "what did pii redact yesterday" reads one index range.
            "CREATE INDEX IF NOT EXISTS audit_events_monitor_ts ON audit_events (monitor, ts)",
            "CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id)",
        ),
    ),
    Migration(
        2,
        "replica column: which gateway wrote the event",
        ("ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS replica TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        3,
        "trace_id and span_id columns: the request's OpenTelemetry trace",
        (
            "ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS trace_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS span_id TEXT NOT NULL DEFAULT ''",
        ),
    ),
)


def latest(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def pending(migrations: Sequence[Migration], current: int) -> list[Migration]:
    """The migrations still to apply on a schema at version ``current``, in order.

    Raises ValueError when the list itself is malformed (versions must be 1, 2, 3, ...).
    """
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"audit migrations must be numbered 1, 2, 3, ...; found {migration.version} at position {expected}"
            )
    return [migration for migration in migrations if migration.version > current]
