"""The audit log's writer: every audited monitor verdict, written off the request path.

The request path only appends to an in-memory queue (``AuditStore.record``); one writer
thread owns the database connection (an ``AuditBackend``: SQLite by default, PostgreSQL with
``audit.dsn``) and commits events in batches. ``flush()`` lets the gateway wait for a commit
(``sync: always``) and ``close()`` drains the queue, so a clean shutdown loses nothing.

A database that cannot be reached is retried with backoff while events queue up to
``queue_max``; beyond it they are counted dropped and logged, and the gateway keeps serving
(during such an outage ``flush`` does not wait). Reading the log back is
``query.py``'s job.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.audit.backends import AuditBackend, make_backend
from gateway.audit.backoff import Backoff
from gateway.audit.errors import AuditError, AuditUnavailable
from gateway.audit.event import AuditEvent
from gateway.audit.settings import AuditSettings

# One logger for the whole audit log (writer, backends), whichever module speaks.
logger = logging.getLogger("gateway.audit")

# Under a flood of drops, one warning per interval (with the count) instead of one per event.
DROP_LOG_INTERVAL_S = 10.0
# Retention deletes this many rows per transaction, between write batches, so a large
# backlog never holds the writer (or a table lock) for long.
PRUNE_CHUNK = 5000


@dataclass(slots=True)
class _Waiter:
    target: int  # flush returns once this many accepted events are processed
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class _RateLimitedLog:
    """Warnings at most once per interval; each carries the count since the last one."""

    def __init__(self, template: str) -> None:
        self._template = template
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
        logger.warning(self._template, total, reason)


class AuditStore:
    """Queue + one writer thread + a backend. Build it in the app's lifespan.

    ``on_written(n)`` and ``on_dropped(n, reason)`` let the caller count metrics; they run
    on the writer thread (or on the caller's thread for a full queue), so keep them cheap
    and thread-safe (prometheus counters are). ``backend`` is injectable (tests).
    """

    def __init__(
        self,
        settings: AuditSettings,
        *,
        backend: AuditBackend | None = None,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.replica = settings.replica or socket.gethostname()
        self._backend = backend
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
        self._stop_requested = threading.Event()
        self._stop_at = math.inf
        self._unavailable = False  # the writer is retrying a database it cannot reach
        self._next_prune = 0.0
        self._thread: threading.Thread | None = None
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._drop_log = _RateLimitedLog("audit: dropped %d event(s) since the last warning; latest reason: %s")
        self._sync_log = _RateLimitedLog("audit: %d response(s) released before their events were committed: %s")

    async def start(self) -> None:
        """Open the database (migrating it) and start the writer; raises AuditError if the
        database cannot be opened or reached."""
        if not self.settings.enabled or self._thread is not None:
            return
        if self._backend is None:
            self._backend = make_backend(self.settings, self.replica)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="taxgate-audit-writer", daemon=True)
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
        """Return once every event recorded before this call is committed (or counted
        dropped); at once while the database is unreachable, and after ``sync_timeout_s``."""
        if not self._running():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._done >= self._accepted:
                return
            if self._unavailable:
                self._sync_log.warn(1, f"{self._name()} is unavailable")
                return
            waiter = _Waiter(self._accepted, loop, future)
            self._waiters.append(waiter)
            self._cond.notify()
        timeout = self.settings.sync_timeout_s or None
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._cond:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            self._sync_log.warn(1, f"no commit within audit.sync_timeout_s={self.settings.sync_timeout_s:g}")

    async def close(self) -> None:
        """Drain and commit everything queued, stop the writer and close the database."""
        with self._cond:
            if not self._stopping:
                self._stop_at = time.monotonic() + self.settings.drain_timeout_s
            self._stopping = True
            self._cond.notify()
        self._stop_requested.set()
        if self._thread is None:
            with self._cond:
                lost, self._pending = len(self._pending), collections.deque()
            if lost:
                self._dropped(lost, "audit store closed before it was started")
            return
        await asyncio.shield(asyncio.wrap_future(self._stopped))

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _name(self) -> str:
        return self._backend.name if self._backend is not None else "the audit database"

    # --- writer thread -------------------------------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        backend = self._backend
        assert backend is not None
        try:
            backend.open()
        except AuditError as exc:
            backend.close()
            key = "audit.dsn" if self.settings.dsn is not None else "audit.path"
            ready.set_exception(
                AuditError(
                    f"{exc}. Set {key} to a database the gateway can open, or "
                    "audit.enabled: false to run without the audit log."
                )
            )
            self._abandon()
            self._stopped.set_result(None)
            return
        ready.set_result(None)
        try:
            while True:
                batch, last = self._next_batch()
                if batch:
                    self._write(batch)
                self._finished(len(batch))
                if last:
                    break
                self._maybe_prune()
        except BaseException:
            logger.exception("audit: the writer stopped on an unexpected error")
            raise
        finally:
            backend.close()
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
        """Wait for work; return up to batch_max events and whether the writer should stop.

        An empty batch means "nothing yet, but retention is due".
        """
        limit = self.settings.batch_max
        with self._cond:
            while not self._pending and not self._stopping:
                if self.settings.retention_days is None:
                    self._cond.wait()
                    continue
                left = self._next_prune - time.monotonic()
                if left <= 0:
                    return [], False
                self._cond.wait(left)
            if self.settings.sync == "batch":
                # Let a batch fill up, but no longer than the interval, and not at all
                # when someone waits on flush() or the store is closing.
                deadline = time.monotonic() + self.settings.flush_interval_ms / 1000
                while len(self._pending) < limit and not self._waiters and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            take = min(limit, len(self._pending))
            batch = [self._pending.popleft() for _ in range(take)]
            last = self._stopping and not self._pending
        return batch, last

    def _write(self, batch: list[AuditEvent]) -> None:
        backend = self._backend
        assert backend is not None
        rows = []
        for event in batch:
            try:
                rows.append(backend.encode(event))
            except (TypeError, ValueError) as exc:
                self._dropped(1, f"cannot encode event from monitor {event.monitor!r}: {exc}")
        if not rows:
            return
        backoff = Backoff(maximum_s=self.settings.retry_max_s)
        while True:
            try:
                backend.write(rows)
            except AuditUnavailable as exc:
                if not self._wait_for_database(exc, backoff):
                    self._dropped(
                        len(rows), f"{backend.name} still unavailable after drain_timeout_s at shutdown: {exc}"
                    )
                    return
                continue
            except AuditError as exc:
                self._salvage(rows, exc)
                return
            self._available()
            self._notify(self._on_written, len(rows))
            return

    def _wait_for_database(self, exc: AuditError, backoff: Backoff) -> bool:
        """Back off, then reconnect; False once a shutdown has waited ``drain_timeout_s``."""
        backend = self._backend
        assert backend is not None
        with self._cond:
            first, self._unavailable = not self._unavailable, True
            waiting = len(self._pending)
            # Responses already waiting on a commit go out now, as later ones will.
            released, self._waiters = (self._waiters, []) if first else ([], self._waiters)
        for waiter in released:
            self._wake(waiter)
        if released:
            self._sync_log.warn(len(released), f"{backend.name} is unavailable")
        if first:
            logger.warning(
                "audit: %s is unavailable (%s); retrying with backoff, up to "
                "%d events wait in the queue, later ones are dropped",
                backend.name,
                exc,
                self.settings.queue_max,
            )
        while True:
            delay = backoff.delay()
            if self._stop_requested.is_set():
                left = self._stop_at - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(delay, left))
            else:
                self._stop_requested.wait(delay)  # a shutdown cuts the wait short
            backend.close()
            try:
                backend.open()
            except AuditError as again:
                logger.debug("audit: reconnect to %s failed (%d events queued): %s", backend.name, waiting, again)
                continue
            return True

    def _available(self) -> None:
        if self._unavailable:
            with self._cond:
                self._unavailable = False
            logger.warning("audit: %s is reachable again; writing resumes", self._name())

    def _salvage(self, rows: list[tuple[object, ...]], exc: AuditError) -> None:
        """A batch failed for good: write its rows one by one so one bad row costs one."""
        backend = self._backend
        assert backend is not None
        if len(rows) == 1:
            self._dropped(1, str(exc))
            return
        written = 0
        for row in rows:
            try:
                backend.write([row])
            except AuditError as single:
                self._dropped(1, str(single))
            else:
                written += 1
        if written:
            self._notify(self._on_written, written)

    def _maybe_prune(self) -> None:
        days = self.settings.retention_days
        if days is None or time.monotonic() < self._next_prune:
            return
        backend = self._backend
        assert backend is not None
        interval = self.settings.retention_interval_s
        try:
            deleted = backend.prune(time.time() - days * 86400, PRUNE_CHUNK)
        except AuditError as exc:
            logger.warning("audit: retention (delete events older than %g days) failed: %s", days, exc)
            self._next_prune = time.monotonic() + min(interval, 60.0)
            return
        if deleted:
            logger.info("audit: retention deleted %d event(s) older than %g days", deleted, days)
        # A full chunk means more are due: continue after the next batch, not in an hour.
        self._next_prune = time.monotonic() + (0.0 if deleted >= PRUNE_CHUNK else interval)

    def _finished(self, count: int) -> None:
        with self._cond:
            self._done += count
            ready = [w for w in self._waiters if w.target <= self._done]
            self._waiters = [w for w in self._waiters if w.target > self._done]
        for waiter in ready:
            self._wake(waiter)

    @staticmethod
    def _wake(waiter: _Waiter) -> None:
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
