"""The audit log: every non-pass monitor verdict, written to SQLite off the request path.

The request path only appends to an in-memory queue (``AuditStore.record``); one writer
thread owns the SQLite connection and commits events in batches. ``flush()`` lets the
gateway wait for a commit (``sync: always``) and ``close()`` drains the queue, so a clean
shutdown loses nothing. ``query_events`` / ``count_events`` read the log back (the
``taxgate audit`` command uses them).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
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
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
CREATE INDEX IF NOT EXISTS audit_events_monitor ON audit_events (monitor);
CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id);
"""
COLUMNS = ("request_id", "ts", "stage", "monitor", "action", "hit", "score", "labels",
           "error", "excerpt", "route", "model")
INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# A second writer (another gateway on the same file, a VACUUM) should delay us, not drop events.
BUSY_TIMEOUT_MS = 5000
# Under a flood of drops, one warning per interval (with the count) instead of one per event.
DROP_LOG_INTERVAL_S = 10.0


class AuditSettings(BaseModel):
    """``audit:`` in the gateway settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: str = "taxgate-audit.db"
    # batch: commit every batch_max events or flush_interval_ms; always: the gateway awaits
    # the commit of a request's events before releasing its response.
    sync: Literal["batch", "always"] = "batch"
    batch_max: int = Field(256, ge=1)
    flush_interval_ms: float = Field(200, ge=0)
    queue_max: int = Field(100_000, ge=1)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One monitor verdict. ``excerpt`` must already be masked by the caller."""

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


class AuditError(RuntimeError):
    """The audit database cannot be opened or read."""


@dataclass(slots=True)
class _Waiter:
    target: int  # flush returns once this many accepted events are processed
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class _DropLog:
    """Rate-limited warnings for dropped events; always carries the reason and the count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -math.inf
        self._suppressed = 0

    def warn(self, count: int, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._suppressed += count
            if now - self._last < DROP_LOG_INTERVAL_S:
                return
            total, self._suppressed, self._last = self._suppressed, 0, now
        logger.warning("audit: dropped %d event(s) since the last warning; latest reason: %s",
                       total, reason)


class AuditStore:
    """Queue + one writer thread + SQLite (WAL). Build it in the app's lifespan.

    ``on_written(n)`` and ``on_dropped(n, reason)`` let the caller count metrics; they run
    on the writer thread (or on the caller's thread for a full queue), so keep them cheap
    and thread-safe (prometheus counters are).
    """

    def __init__(
        self,
        settings: AuditSettings,
        *,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._cond = threading.Condition()
        self._pending: collections.deque[AuditEvent] = collections.deque()
        self._waiters: list[_Waiter] = []
        # Sequence numbers: events accepted by record() and events the writer has finished
        # with (committed or dropped). The queue is FIFO, so done >= n means the first n are out.
        self._accepted = 0
        self._done = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._drop_log = _DropLog()

    async def start(self) -> None:
        """Open the database and start the writer; raises AuditError if it cannot be opened."""
        if not self.settings.enabled or self._thread is not None:
            return
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="taxgate-audit-writer", daemon=True
        )
        self._thread.start()
        # Shielded: a cancelled start must not cancel the thread's future under it (the
        # thread's set_result would then raise and leave the connection open).
        await asyncio.shield(asyncio.wrap_future(ready))

    def record(self, event: AuditEvent) -> None:
        """Queue one event. Never blocks and never raises into the request path."""
        if not self.settings.enabled:
            return
        with self._cond:
            reason = None
            if self._stopping:
                reason = "audit store is closed"
            elif len(self._pending) >= self.settings.queue_max:
                reason = f"queue full ({self.settings.queue_max} events waiting)"
            else:
                self._pending.append(event)
                self._accepted += 1
                # Wake the writer only when it can act: it sleeps on an empty queue, or
                # waits for a batch to fill (or its interval to pass). Fewer thread wake-ups
                # on the event loop's thread under load.
                if len(self._pending) in (1, self.settings.batch_max):
                    self._cond.notify()
        if reason is not None:
            self._dropped(1, reason)

    async def flush(self) -> None:
        """Return once every event recorded before this call is committed (or counted dropped)."""
        if not self._running():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._done >= self._accepted:
                return
            self._waiters.append(_Waiter(self._accepted, loop, future))
            self._cond.notify()
        await future

    async def close(self) -> None:
        """Drain and commit everything queued, stop the writer and close the database."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            with self._cond:
                lost, self._pending = len(self._pending), collections.deque()
            if lost:
                self._dropped(lost, "audit store closed before it was started")
            return
        await asyncio.shield(asyncio.wrap_future(self._stopped))

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- writer thread -------------------------------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = _open_for_writing(self.settings.path)
        except (sqlite3.Error, OSError) as exc:
            ready.set_exception(AuditError(
                f"cannot open the audit database {self.settings.path!r}: {exc}. "
                "Set audit.path to a writable file, or audit.enabled: false to run without it."
            ))
            self._abandon()
            self._stopped.set_result(None)
            return
        ready.set_result(None)
        try:
            while True:
                batch, last = self._next_batch()
                if batch:
                    self._write(conn, batch)
                self._finished(len(batch))
                if last:
                    break
        finally:
            conn.close()
            self._abandon()
            self._stopped.set_result(None)

    def _abandon(self) -> None:
        """After the writer ends: count what it left behind, release every flush waiter."""
        with self._cond:
            self._stopping = True
            lost, self._pending = len(self._pending), collections.deque()
        if lost:  # a clean close drains: only a failed start or an unexpected error gets here
            self._dropped(lost, "audit writer is not running, see the error above")
        self._finished(lost)

    def _next_batch(self) -> tuple[list[AuditEvent], bool]:
        """Wait for work; return up to batch_max events and whether the writer should stop."""
        limit = self.settings.batch_max
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if self.settings.sync == "batch":
                # Let a batch fill up, but no longer than the interval, and not at all
                # when someone waits on flush() or the store is closing.
                deadline = time.monotonic() + self.settings.flush_interval_ms / 1000
                while (len(self._pending) < limit and not self._waiters
                       and not self._stopping):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            take = min(limit, len(self._pending))
            batch = [self._pending.popleft() for _ in range(take)]
            last = self._stopping and not self._pending
        return batch, last

    def _write(self, conn: sqlite3.Connection, batch: list[AuditEvent]) -> None:
        rows = []
        for event in batch:
            try:
                rows.append(_to_row(event))
            except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
                self._dropped(1, f"cannot encode event from monitor {event.monitor!r}: {exc}")
        if not rows:
            return
        try:
            with conn:  # one transaction: commit on success, rollback on error
                conn.executemany(INSERT, rows)
        except Exception as exc:  # noqa: BLE001 - any failure: count and log, keep writing
            self._dropped(len(rows), f"write to {self.settings.path!r} failed: "
                                     f"{type(exc).__name__}: {exc}")
            return
        self._notify(self._on_written, len(rows))

    def _finished(self, count: int) -> None:
        with self._cond:
            self._done += count
            ready = [w for w in self._waiters if w.target <= self._done]
            self._waiters = [w for w in self._waiters if w.target > self._done]
        for waiter in ready:
            try:
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
            except RuntimeError:
                # The waiting loop is already closed: nobody is left to wake.
                logger.debug("audit: flush waiter's event loop is closed")

    def _dropped(self, count: int, reason: str) -> None:
        self._drop_log.warn(count, reason)
        self._notify(self._on_dropped, count, reason)

    def _notify(self, callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            # A broken metrics hook must not kill the writer (that would lose every later event).
            logger.exception("audit: callback %r failed", callback)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # the flushing request may have been cancelled meanwhile
        future.set_result(None)


def _open_for_writing(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            logger.warning("audit: %s does not support WAL (journal_mode=%s)", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error:
        conn.close()
        raise
    conn.isolation_level = "DEFERRED"  # so `with conn:` wraps each batch in a transaction
    return conn


def _to_row(event: AuditEvent) -> tuple[object, ...]:
    labels = orjson.dumps(event.labels).decode()
    return (event.request_id, float(event.ts), event.stage, event.monitor, event.action,
            int(bool(event.hit)), float(event.score), labels, event.error, event.excerpt,
            event.route, event.model)


# --- reading ------------------------------------------------------------------------------


def _filters(**values: object) -> tuple[str, list[object]]:
    clauses, params = [], []
    for column in ("monitor", "stage", "action", "request_id"):
        if values[column] is not None:
            clauses.append(f"{column} = ?")
            params.append(values[column])
    if values["since"] is not None:
        clauses.append("ts >= ?")
        params.append(values["since"])
    if values["until"] is not None:
        clauses.append("ts < ?")
        params.append(values["until"])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _open_for_reading(path: str | Path) -> sqlite3.Connection:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no audit database at {str(file)!r}")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM audit_events LIMIT 1")
    except sqlite3.Error as exc:
        raise AuditError(f"{str(file)!r} is not a readable taxgate audit database: {exc}") from exc
    return conn


def iter_events(
    path: str | Path,
    *,
    monitor: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> Iterator[AuditEvent]:
    """Events matching every given filter, oldest first; ``since`` <= ts < ``until``.

    With ``limit``, the newest ``limit`` matches (still oldest first), like ``tail``.
    """
    where, params = _filters(monitor=monitor, stage=stage, action=action,
                             request_id=request_id, since=since, until=until)
    sql = f"SELECT {', '.join(COLUMNS)}, id FROM audit_events{where}"
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, id DESC LIMIT ?)"
        params.append(limit)
    sql += " ORDER BY ts, id"
    # Open and run the query now, so a missing or foreign file fails at the call, not
    # halfway through a caller's output.
    conn = _open_for_reading(path)
    try:
        cursor = conn.execute(sql, params)
    except sqlite3.Error as exc:
        conn.close()
        raise AuditError(f"cannot query {str(path)!r}: {exc}") from exc
    return _rows(conn, cursor)


def _rows(conn: sqlite3.Connection, cursor: sqlite3.Cursor) -> Iterator[AuditEvent]:
    try:
        for row in cursor:
            yield _from_row(row)
    finally:
        conn.close()


def query_events(
    path: str | Path,
    *,
    monitor: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """``iter_events`` as a list."""
    return list(iter_events(path, monitor=monitor, stage=stage, action=action,
                            request_id=request_id, since=since, until=until, limit=limit))


def count_events(
    path: str | Path,
    by: Literal["monitor", "stage", "action"],
    *,
    monitor: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    request_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, int]:
    """Matching events counted per value of column ``by``, largest count first."""
    if by not in ("monitor", "stage", "action"):
        raise ValueError(f"cannot group audit events by {by!r}")
    where, params = _filters(monitor=monitor, stage=stage, action=action,
                             request_id=request_id, since=since, until=until)
    sql = (f"SELECT {by}, COUNT(*) FROM audit_events{where} "
           f"GROUP BY {by} ORDER BY COUNT(*) DESC, {by}")
    conn = _open_for_reading(path)
    try:
        return {value: count for value, count in conn.execute(sql, params)}
    except sqlite3.Error as exc:
        raise AuditError(f"cannot query {str(path)!r}: {exc}") from exc
    finally:
        conn.close()


def _from_row(row: tuple) -> AuditEvent:
    (request_id, ts, stage, monitor, action, hit, score, labels, error, excerpt,
     route, model, _id) = row
    return AuditEvent(
        request_id=request_id, ts=ts, stage=stage, monitor=monitor, action=action,
        hit=bool(hit), score=math.nan if score is None else score,  # SQLite stores NaN as NULL
        labels=orjson.loads(labels), error=error, excerpt=excerpt, route=route, model=model,
    )
