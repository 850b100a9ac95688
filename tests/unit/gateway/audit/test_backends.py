"""The store over an injected backend (retry, backoff, outage, salvage), the pure helpers,
and the SQLite migrations on an empty and on a version-1 file."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import pytest

from gateway.audit import migrations as audit_migrations
from gateway.audit.backends import make_backend
from gateway.audit.backends.sqlite import SQLiteBackend
from gateway.audit.backoff import Backoff
from gateway.audit.dsn import is_dsn, redact_dsn
from gateway.audit.errors import AuditError, AuditUnavailable
from gateway.audit.event import AuditEvent
from gateway.audit.filter import AuditFilter
from gateway.audit.migrations import Migration, pending
from gateway.audit.query import query_events
from gateway.audit.settings import AuditSettings
from gateway.audit.store import AuditStore
from tests.waiting import wait_until


def event(n: int = 0, **overrides) -> AuditEvent:
    fields = dict(
        request_id=f"req-{n}",
        ts=1_700_000_000.0 + n,
        stage="input",
        monitor="pii",
        action="redact",
        hit=True,
        score=0.5,
        labels={},
        error=None,
        excerpt="x",
    )
    fields.update(overrides)
    return AuditEvent(**fields)


class FlakyBackend:
    """In memory; ``down`` makes every call raise AuditUnavailable, ``broken`` rows fail."""

    name = "flaky"

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.down = threading.Event()
        self.opens = 0
        self.batches: list[int] = []
        self.broken: set[str] = set()

    def open(self) -> None:
        self.opens += 1
        if self.down.is_set():
            raise AuditUnavailable("connection refused")

    def encode(self, e: AuditEvent) -> tuple:
        return (e.request_id,)

    def write(self, rows) -> None:
        if self.down.is_set():
            raise AuditUnavailable("server closed the connection")
        if any(row[0] in self.broken for row in rows):
            raise AuditError("invalid byte sequence")
        self.batches.append(len(rows))
        self.rows.extend(rows)

    def prune(self, before: float, limit: int) -> int:
        return 0

    def close(self) -> None:
        pass


class Counts:
    def __init__(self) -> None:
        self.written = 0
        self.dropped = 0

    def store(self, settings: AuditSettings, backend) -> AuditStore:
        return AuditStore(
            settings,
            backend=backend,
            on_written=lambda n: setattr(self, "written", self.written + n),
            on_dropped=lambda n, _r: setattr(self, "dropped", self.dropped + n),
        )


def test_backoff_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(initial_s=0.1, maximum_s=0.5)
    assert [backoff.delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.delay() == 0.1


def test_dsn_helpers_hide_passwords():
    assert is_dsn("postgresql://a@b/c") and is_dsn("postgres://a@b/c")
    assert not is_dsn("/var/lib/taxgate/audit.db")
    assert redact_dsn("postgresql://taxgate:s3cr%40t@db:5432/audit") == "postgresql://taxgate:***@db:5432/audit"
    assert (
        redact_dsn("postgresql://db/audit?password=s3cr3t&sslmode=require")
        == "postgresql://db/audit?password=***&sslmode=require"
    )
    assert redact_dsn("postgresql://taxgate@db/audit") == "postgresql://taxgate@db/audit"


def test_settings_choose_the_backend_and_reject_a_non_postgres_dsn(tmp_path):
    assert isinstance(make_backend(AuditSettings(path=str(tmp_path / "a.db")), "r"), SQLiteBackend)
    assert make_backend(AuditSettings(dsn="postgresql://u:pw@h/db"), "r").name == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        AuditSettings(dsn="mysql://h/db")
    assert "pw" not in repr(AuditSettings(dsn="postgresql://u:pw@h/db"))


def test_pending_migrations_in_order_and_numbering_checked():
    steps = (Migration(1, "a", ()), Migration(2, "b", ()), Migration(3, "c", ()))
    assert [m.version for m in pending(steps, 0)] == [1, 2, 3]
    assert [m.version for m in pending(steps, 2)] == [3]
    assert pending(steps, 3) == [] and pending(steps, 9) == []
    with pytest.raises(ValueError, match="numbered"):
        pending((Migration(1, "a", ()), Migration(3, "c", ())), 0)
    for dialect in (audit_migrations.SQLITE, audit_migrations.POSTGRES):
        pending(dialect, 0)  # the shipped lists are well-formed


async def test_outage_queues_then_drops_beyond_the_queue_and_resumes(caplog):
    backend = FlakyBackend()
    counts = Counts()
    store = counts.store(AuditSettings(queue_max=10, batch_max=4, flush_interval_ms=0, retry_max_s=0.02), backend)
    await store.start()
    store.record(event(0))
    await wait_until(lambda: counts.written == 1)
    backend.down.set()
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        store.record(event(1))
        # The writer holds event 1 and retries; what comes now queues, then is dropped.
        await wait_until(lambda: "unavailable" in caplog.text, what="the outage noticed")
        for n in range(2, 31):
            store.record(event(n))
        await wait_until(lambda: counts.dropped >= 30 - 10 - 4)
        assert "unavailable" in caplog.text and "queue full" in caplog.text
        await wait_until(lambda: backend.opens > 2, what="reconnects while down")
        backend.down.clear()
        await wait_until(lambda: counts.written + counts.dropped == 31)
        assert "reachable again" in caplog.text
    await store.close()
    assert 30 - 10 - 4 <= counts.dropped <= 30 - 10
    assert len(backend.rows) == counts.written and backend.opens > 2
    # What was kept is written in order, with no duplicate.
    ids = [row[0] for row in backend.rows]
    assert ids == sorted(set(ids), key=lambda rid: int(rid.split("-")[1]))


async def test_flush_does_not_wait_while_the_database_is_down():
    backend = FlakyBackend()
    counts = Counts()
    store = counts.store(AuditSettings(sync="always", sync_timeout_s=30, retry_max_s=0.02), backend)
    await store.start()
    backend.down.set()
    store.record(event(1))
    await asyncio.wait_for(store.flush(), 5)  # released when the outage is noticed
    store.record(event(2))
    await asyncio.wait_for(store.flush(), 1)  # known outage: at once
    backend.down.clear()
    await wait_until(lambda: counts.written == 2)  # the writer's next retry gets through
    store.record(event(3))
    await asyncio.wait_for(store.flush(), 5)  # back to waiting for the commit
    assert [row[0] for row in backend.rows] == ["req-1", "req-2", "req-3"]
    await store.close()


async def test_sync_timeout_bounds_a_slow_commit():
    release = threading.Event()

    class Slow(FlakyBackend):
        def write(self, rows) -> None:
            release.wait(10)
            super().write(rows)

    backend = Slow()
    store = AuditStore(AuditSettings(sync="always", sync_timeout_s=0.1), backend=backend)
    await store.start()
    store.record(event(1))
    started = time.monotonic()
    await store.flush()
    assert time.monotonic() - started < 5 and backend.rows == []
    release.set()
    await store.close()
    assert backend.rows == [("req-1",)]


async def test_close_with_the_database_down_gives_up_after_the_drain_timeout():
    backend = FlakyBackend()
    counts = Counts()
    store = counts.store(AuditSettings(drain_timeout_s=0.2, retry_max_s=0.05), backend)
    await store.start()
    backend.down.set()
    for n in range(5):
        store.record(event(n))
    started = time.monotonic()
    await asyncio.wait_for(store.close(), 10)
    assert time.monotonic() - started < 5
    assert counts.dropped == 5 and counts.written == 0


async def test_a_bad_row_costs_itself_not_its_batch():
    backend = FlakyBackend()
    backend.broken = {"req-2"}
    counts = Counts()
    store = counts.store(AuditSettings(batch_max=10, flush_interval_ms=50), backend)
    await store.start()
    for n in range(5):
        store.record(event(n))
    await store.close()
    assert [row[0] for row in backend.rows] == ["req-0", "req-1", "req-3", "req-4"]
    assert (counts.written, counts.dropped) == (4, 1)


async def test_retention_prunes_on_its_interval(tmp_path):
    path = str(tmp_path / "audit.db")
    now = time.time()
    store = AuditStore(AuditSettings(path=path, sync="always", retention_days=1, retention_interval_s=0.05))
    await store.start()
    try:
        store.record(event(1, ts=now - 2 * 86400))
        store.record(event(2, ts=now))
        await store.flush()
        await wait_until(lambda: [e.request_id for e in query_events(path)] == ["req-2"])
    finally:
        await store.close()


V1_ROW = ("old", 1_700_000_000.0, "input", "pii", "redact", 1, 1.0, "{}", None, "x", "/v1/chat/completions", "m")


def test_sqlite_migrates_an_empty_file(tmp_path):
    backend = SQLiteBackend(str(tmp_path / "a.db"))
    backend.open()
    backend.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == audit_migrations.latest(audit_migrations.SQLITE)
    assert "replica" in {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}


async def test_sqlite_upgrades_a_version_1_file_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in audit_migrations.SQLITE[0].statements:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO audit_events (request_id, ts, stage, monitor, action, hit, score,"
        " labels, error, excerpt, route, model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        V1_ROW,
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert query_events(path)[0].replica == ""  # a v1 file reads before it is upgraded
    assert query_events(path, AuditFilter(trace_id="")) == query_events(path)
    store = AuditStore(AuditSettings(path=str(path)))
    await store.start()
    store.record(event(1, replica="gw-a", trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331"))
    await store.close()
    old, new = query_events(path)
    assert (old.request_id, old.replica, old.trace_id, old.span_id) == ("old", "", "", "")
    assert (new.request_id, new.replica) == ("req-1", "gw-a")
    assert (new.trace_id, new.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert query_events(path, AuditFilter(replica="gw-a")) == [new]
