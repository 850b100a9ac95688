"""The embedded default: one SQLite file (WAL) per gateway replica."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from gateway.audit import migrations
from gateway.audit.backends.base import run_query
from gateway.audit.errors import AuditError, AuditUnavailable
from gateway.audit.event import COLUMNS, AuditEvent, event_from_row
from gateway.audit.filter import SQLITE

logger = logging.getLogger("gateway.audit")

INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# A second writer (another gateway on the same file, a VACUUM) should delay us, not drop events.
BUSY_TIMEOUT_MS = 5000


class SQLiteBackend:
    def __init__(self, path: str) -> None:
        self.path = path
        self.name = repr(path)
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(f"cannot open the audit database {self.path!r}: {exc}") from exc
        # Several workers open one file at once (serve --workers): switching to WAL and
        # migrating may meet a lock the busy handler does not wait for; try again.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    logger.warning("audit: %s does not support WAL (journal_mode=%s)", self.path, mode)
                conn.execute("PRAGMA synchronous = NORMAL")
                migrate(conn)
                break
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                conn.close()
                raise AuditError(f"cannot open the audit database {self.path!r}: {exc}") from exc
            except sqlite3.Error as exc:
                conn.close()
                raise AuditError(f"cannot open the audit database {self.path!r}: {exc}") from exc
        self._conn = conn

    def encode(self, event: AuditEvent) -> tuple[object, ...]:
        labels = orjson.dumps(event.labels).decode()
        return (
            event.request_id,
            float(event.ts),
            event.stage,
            event.monitor,
            event.action,
            int(bool(event.hit)),
            float(event.score),
            labels,
            event.error,
            event.excerpt,
            event.route,
            event.model,
            event.replica,
            event.trace_id,
            event.span_id,
        )

    def write(self, rows: Sequence[tuple[object, ...]]) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise _classify(exc, self.path) from exc

    def prune(self, before: float, limit: int) -> int:
        conn = self._connection()
        try:
            cursor = conn.execute(
                "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE ts < ? ORDER BY ts LIMIT ?)",
                (before, limit),
            )
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from exc
        return cursor.rowcount

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AuditUnavailable(f"{self.path!r} is not open")
        return self._conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the pending SQLite migrations in one IMMEDIATE transaction; the new version."""
    conn.execute("BEGIN IMMEDIATE")  # the write lock first: two processes migrate in turn
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for migration in migrations.pending(migrations.SQLITE, current):
            for statement in migration.statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; the version is our own integer.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            current = migration.version
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    if current > migrations.latest(migrations.SQLITE):
        logger.warning(
            "audit: schema version %d is newer than this taxgate knows (%d); writing the columns it knows",
            current,
            migrations.latest(migrations.SQLITE),
        )
    return current


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.debug("audit: rollback failed", exc_info=True)


def _classify(exc: sqlite3.Error, path: str) -> AuditError:
    # busy_timeout already waited for the lock: a lock still held, or I/O, may clear later;
    # anything else (a dropped table, a corrupt file) will not by retrying.
    message = f"write to {path!r} failed: {type(exc).__name__}: {exc}"
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return AuditUnavailable(message)
    return AuditError(message)


class SQLiteReader:
    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _open(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise FileNotFoundError(f"no audit database at {str(self.path)!r}")
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            conn.execute("SELECT 1 FROM audit_events LIMIT 1")
        except sqlite3.Error as exc:
            raise AuditError(f"{str(self.path)!r} is not a readable taxgate audit database: {exc}") from exc
        return conn

    def missing_columns(self) -> frozenset[str]:
        # A file written before the replica column (schema v1, read-only here) reads as ''.
        conn = self._open()
        try:
            present = {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}
        finally:
            conn.close()
        return frozenset(column for column in COLUMNS if column not in present)

    def rows(self, sql: str, params: Sequence[object]) -> Iterator[Sequence[object]]:
        conn = self._open()
        return run_query(conn, conn.cursor(), sql, params, errors=sqlite3.Error, source=repr(str(self.path)))

    def decode(self, row: Sequence[object]) -> AuditEvent:
        values = dict(zip(COLUMNS, row, strict=False))
        values["labels"] = orjson.loads(values["labels"])  # type: ignore[arg-type]
        return event_from_row(values)
