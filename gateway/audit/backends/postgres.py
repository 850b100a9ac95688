"""The shared audit log: one PostgreSQL database that every gateway replica writes to.

psycopg 3 (the ``postgres`` extra), blocking API: it runs on the audit writer thread, never
on the event loop. Batches go in with ``COPY``, one transaction each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway.audit import migrations
from gateway.audit.backends.base import run_query
from gateway.audit.dsn import redact_dsn
from gateway.audit.errors import AuditError, AuditUnavailable
from gateway.audit.event import COLUMNS, AuditEvent, event_from_row
from gateway.audit.filter import POSTGRES

logger = logging.getLogger("gateway.audit")

COPY = f"COPY audit_events ({', '.join(COLUMNS)}) FROM STDIN"
# Advisory lock keys (any fixed bigint): one migrating replica, one pruning replica at a time.
MIGRATE_LOCK = 0x7A78_6761_7465_0001
PRUNE_LOCK = 0x7A78_6761_7465_0002
SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS taxgate_audit_schema (
    version     INTEGER     PRIMARY KEY,
    description TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
# Defaults for what the DSN does not say: fail fast on connect, and notice a dead peer
# (no RST after a network partition) in seconds, not after the kernel's 15-minute timeout.
CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
READ_CHUNK = 2000


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise AuditError("audit.dsn needs the PostgreSQL driver: pip install 'taxgate[postgres]' (psycopg 3)") from exc
    return psycopg


def connect(dsn: str, *, application_name: str = "taxgate") -> Any:
    """An autocommit connection; AuditUnavailable when the server cannot be reached."""
    psycopg = _psycopg()
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise AuditError(f"audit.dsn {redact_dsn(dsn)!r} is not a valid PostgreSQL connection string: {exc}") from None
    extra = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
    extra.setdefault("application_name", application_name)
    try:
        return psycopg.connect(dsn, autocommit=True, **extra)
    except psycopg.OperationalError as exc:
        raise AuditUnavailable(f"cannot connect to {redact_dsn(dsn)}: {_first_line(exc)}") from None


def migrate(conn: Any) -> int:
    """Apply the pending PostgreSQL migrations under an advisory lock; the new version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(SCHEMA_TABLE)
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM taxgate_audit_schema").fetchone()[0]
        for migration in migrations.pending(migrations.POSTGRES, current):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO taxgate_audit_schema (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
            current = migration.version
    known = migrations.latest(migrations.POSTGRES)
    if current > known:
        logger.warning(
            "audit: schema version %d is newer than this taxgate knows (%d); writing the columns it knows",
            current,
            known,
        )
    return current


class PostgresBackend:
    def __init__(self, dsn: str, *, application_name: str = "taxgate") -> None:
        self._dsn = dsn
        self._application_name = application_name
        self.name = redact_dsn(dsn)
        self._conn: Any = None

    def open(self) -> None:
        psycopg = _psycopg()
        conn = connect(self._dsn, application_name=self._application_name)
        try:
            migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise self._classify(exc, "migrate") from None
        self._conn = conn

    def encode(self, event: AuditEvent) -> tuple[object, ...]:
        labels = orjson.dumps({_text(str(k)) if isinstance(k, str) else k: v for k, v in event.labels.items()}).decode()
        return (
            _text(event.request_id),
            datetime.fromtimestamp(float(event.ts), timezone.utc),
            _text(event.stage),
            _text(event.monitor),
            _text(event.action),
            bool(event.hit),
            float(event.score),
            labels,
            None if event.error is None else _text(event.error),
            _text(event.excerpt),
            _text(event.route),
            _text(event.model),
            _text(event.replica),
            _text(event.trace_id),
            _text(event.span_id),
        )

    def write(self, rows: Sequence[tuple[object, ...]]) -> None:
        psycopg = _psycopg()
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise self._classify(exc, "write") from None

    def prune(self, before: float, limit: int) -> int:
        psycopg = _psycopg()
        conn = self._connection()
        try:
            with conn.transaction():
                # One replica prunes at a time; the others find the lock taken and skip.
                if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK,)).fetchone()[0]:
                    return 0
                cursor = conn.execute(
                    "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events "
                    "WHERE ts < to_timestamp(%s) ORDER BY ts LIMIT %s)",
                    (before, limit),
                )
                return cursor.rowcount
        except psycopg.Error as exc:
            raise self._classify(exc, "prune") from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            raise AuditUnavailable(f"not connected to {self.name}")
        return self._conn

    def _classify(self, exc: Exception, what: str) -> AuditError:
        psycopg = _psycopg()
        message = f"{what} on {self.name} failed: {type(exc).__name__}: {_first_line(exc)}"
        # Lost connection, server shutting down or restarting, too many clients: retry.
        # Anything else (bad data, a missing table, permissions) will not heal by retrying.
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or (
            self._conn is not None and self._conn.closed
        ):
            return AuditUnavailable(message)
        return AuditError(message)


def _text(value: str) -> str:
    # PostgreSQL text (and jsonb) cannot hold NUL; one such event must not sink its batch.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


class PostgresReader:
    dialect = POSTGRES

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def missing_columns(self) -> frozenset[str]:
        return frozenset()  # the gateway migrates the shared database before it writes

    def rows(self, sql: str, params: Sequence[object]) -> Iterator[Sequence[object]]:
        psycopg = _psycopg()
        conn = connect(self._dsn, application_name="taxgate-audit-cli")
        conn.autocommit = False  # a server-side cursor lives in a transaction
        # Server-side: an export of millions of rows streams instead of filling memory.
        cursor = conn.cursor(name="taxgate_audit_read")
        cursor.itersize = READ_CHUNK
        return run_query(conn, cursor, sql, params, errors=psycopg.Error, source=redact_dsn(self._dsn))

    def decode(self, row: Sequence[object]) -> AuditEvent:
        values = dict(zip(COLUMNS, row, strict=False))
        values["ts"] = values["ts"].timestamp()  # type: ignore[attr-defined]
        return event_from_row(values)
