"""The audit writer: background thread, batching, flush, shutdown drain, failures."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time

import pytest

from gateway.audit.errors import AuditError
from gateway.audit.event import AuditEvent
from gateway.audit.filter import AuditFilter
from gateway.audit.query import query_events
from gateway.audit.settings import AuditSettings
from gateway.audit.store import AuditStore
from tests.waiting import started, wait_until


def event(n: int = 0, **overrides) -> AuditEvent:
    fields = dict(
        request_id=f"req-{n}",
        ts=1_700_000_000.0 + n,
        stage="input",
        monitor="pii",
        action="redact",
        hit=True,
        score=0.25 + n / 10_000,
        labels={"email": 0.9, "phone": 0.1},
        error=None,
        excerpt=f"mail me at [REDACTED:EMAIL] #{n}",
        route="/v1/chat/completions",
        model="tiny",
    )
    fields.update(overrides)
    return AuditEvent(**fields)


class Counts:
    """on_written / on_dropped hooks that remember what they were told."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.dropped: list[tuple[int, str]] = []

    def on_written(self, n: int) -> None:
        self.written.append(n)

    def on_dropped(self, n: int, reason: str) -> None:
        self.dropped.append((n, reason))

    def store(self, settings: AuditSettings) -> AuditStore:
        return AuditStore(settings, on_written=self.on_written, on_dropped=self.on_dropped)


def rows(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    finally:
        conn.close()


async def test_events_read_back_complete(tmp_path):
    path = str(tmp_path / "audit.db")
    sent = [
        event(1),
        event(
            2,
            stage="output",
            monitor="judge-strict",
            action="block",
            hit=False,
            score=1.0,
            labels={},
            error="TimeoutError: judge took 2.0 s",
            excerpt="",
            route="",
            model="",
        ),
        event(3, labels={"toxicity": 0.123456789, "insult": 1e-9}, action="shadow"),
    ]
    store = AuditStore(AuditSettings(path=path))
    await store.start()
    for item in sent:
        store.record(item)
    await store.close()
    assert query_events(path) == sent


async def test_sync_always_flush_makes_events_visible_to_another_connection(tmp_path):
    path = str(tmp_path / "audit.db")
    counts = Counts()
    store = counts.store(AuditSettings(path=path, sync="always"))
    await store.start()
    try:
        for n in range(5):
            store.record(event(n))
        await store.flush()
        assert rows(path) == 5
        store.record(event(99))
        await store.flush()
        assert rows(path) == 6
        assert [e.request_id for e in query_events(path, AuditFilter(request_id="req-99"))] == ["req-99"]
    finally:
        await store.close()
    assert sum(counts.written) == 6 and not counts.dropped


async def test_concurrent_requests_each_await_their_commit(tmp_path):
    path = str(tmp_path / "audit.db")
    store = AuditStore(AuditSettings(path=path, sync="always", batch_max=8))
    await store.start()

    async def request(n: int) -> int:
        store.record(event(n))
        await store.flush()
        return len(query_events(path, AuditFilter(request_id=f"req-{n}")))

    try:
        seen = await asyncio.wait_for(asyncio.gather(*(request(n) for n in range(100))), 10)
    finally:
        await store.close()
    assert seen == [1] * 100


async def test_flush_does_not_wait_for_the_batch_interval(tmp_path):
    path = str(tmp_path / "audit.db")
    store = AuditStore(AuditSettings(path=path, flush_interval_ms=60_000))
    await store.start()
    try:
        store.record(event())
        started = time.monotonic()
        await asyncio.wait_for(store.flush(), timeout=5)
        assert time.monotonic() - started < 5
        assert rows(path) == 1
    finally:
        await store.close()


async def test_flush_with_nothing_pending_returns_at_once(tmp_path):
    store = AuditStore(AuditSettings(path=str(tmp_path / "audit.db")))
    await store.flush()  # not started: nothing to wait for
    await store.start()
    await asyncio.wait_for(store.flush(), timeout=1)
    await store.close()


async def test_batch_mode_close_loses_nothing(tmp_path):
    path = str(tmp_path / "audit.db")
    counts = Counts()
    # A long interval: close() must drain at once, not wait for it.
    store = counts.store(AuditSettings(path=path, batch_max=64, flush_interval_ms=30_000))
    await store.start()
    total = 1000
    for n in range(total):
        store.record(event(n))
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 10
    assert rows(path) == total
    assert sum(counts.written) == total and not counts.dropped
    assert len(counts.written) >= math.ceil(total / 64)  # several transactions
    assert max(counts.written) <= 64
    assert [e.request_id for e in query_events(path)] == [f"req-{n}" for n in range(total)]


async def test_cancelled_close_still_drains(tmp_path):
    path = str(tmp_path / "audit.db")
    store = AuditStore(AuditSettings(path=path, batch_max=16))
    await store.start()
    for n in range(5000):
        store.record(event(n))
    closing = await started(store.close())  # close() now waits on the writer's drain
    closing.cancel()  # e.g. a shutdown grace period ran out
    with pytest.raises(asyncio.CancelledError):
        await closing
    await store.close()
    assert rows(path) == 5000


async def test_batch_mode_commits_within_the_interval_without_flush(tmp_path):
    path = str(tmp_path / "audit.db")
    store = AuditStore(AuditSettings(path=path, flush_interval_ms=20))
    await store.start()
    try:
        store.record(event())
        await wait_until(lambda: rows(path) > 0, what="a commit")
        assert rows(path) == 1
    finally:
        await store.close()


async def test_records_from_many_threads_all_arrive(tmp_path):
    path = str(tmp_path / "audit.db")
    store = AuditStore(AuditSettings(path=path, batch_max=50, flush_interval_ms=1))
    await store.start()

    def producer(base: int) -> None:
        for n in range(200):
            store.record(event(base + n))

    threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await store.close()
    assert rows(path) == 800


async def test_full_queue_counts_drops_and_warns(tmp_path, caplog):
    path = str(tmp_path / "audit.db")
    counts = Counts()
    store = counts.store(AuditSettings(path=path, queue_max=10))
    # Not started yet, so nothing drains the queue and the overflow is deterministic.
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        for n in range(15):
            store.record(event(n))
    assert sum(n for n, _ in counts.dropped) == 5
    assert all("queue full" in reason for _, reason in counts.dropped)
    assert "queue full" in caplog.text
    await store.start()
    await store.close()
    assert rows(path) == 10  # the queued ones still reach the database


async def test_record_after_close_is_counted_not_raised(tmp_path):
    counts = Counts()
    store = counts.store(AuditSettings(path=str(tmp_path / "audit.db")))
    await store.start()
    await store.close()
    store.record(event())
    assert counts.dropped == [(1, "audit store is closed")]
    await store.close()  # closing twice is harmless


async def test_close_without_start_counts_what_was_queued(tmp_path):
    counts = Counts()
    store = counts.store(AuditSettings(path=str(tmp_path / "audit.db")))
    store.record(event())
    await store.close()
    assert [n for n, _ in counts.dropped] == [1]


async def test_write_error_is_counted_and_logged(tmp_path, caplog):
    path = str(tmp_path / "audit.db")
    counts = Counts()
    store = counts.store(AuditSettings(path=path, sync="always"))
    await store.start()
    store.record(event(0))
    await store.flush()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE audit_events")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        for n in range(1, 4):
            store.record(event(n))
        await asyncio.wait_for(store.flush(), timeout=5)  # a failed write still releases flush
    await store.close()
    assert counts.written == [1]
    assert sum(n for n, _ in counts.dropped) == 3
    assert all("no such table" in reason for _, reason in counts.dropped)
    assert "no such table" in caplog.text and "dropped" in caplog.text


async def test_unencodable_event_is_counted_and_the_rest_written(tmp_path, caplog):
    path = str(tmp_path / "audit.db")
    counts = Counts()
    store = counts.store(AuditSettings(path=path))
    await store.start()
    store.record(event(1))
    store.record(event(2, labels={1: 0.5}))  # JSON object keys must be strings
    store.record(event(3))
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        await store.close()
    assert [e.request_id for e in query_events(path)] == ["req-1", "req-3"]
    assert [n for n, _ in counts.dropped] == [1]
    assert "cannot encode" in counts.dropped[0][1]
    assert "cannot encode" in caplog.text


async def test_failing_callback_does_not_stop_the_writer(tmp_path, caplog):
    path = str(tmp_path / "audit.db")

    def broken(n: int) -> None:
        raise RuntimeError("metrics are down")

    store = AuditStore(AuditSettings(path=path, sync="always"), on_written=broken)
    await store.start()
    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        store.record(event(1))
        await store.flush()
        store.record(event(2))
        await store.close()
    assert rows(path) == 2
    assert "metrics are down" in caplog.text


async def test_unopenable_path_fails_start_with_a_clear_error(tmp_path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    counts = Counts()
    store = counts.store(AuditSettings(path=str(directory)))
    store.record(event())  # queued before start: counted when the start fails
    with pytest.raises(AuditError, match="audit.path"):
        await store.start()
    store.record(event())  # the request path still never raises
    await store.flush()
    await store.close()
    assert sum(n for n, _ in counts.dropped) == 2


async def test_wal_mode_and_parent_directories(tmp_path):
    path = tmp_path / "nested" / "dir" / "audit.db"
    store = AuditStore(AuditSettings(path=str(path)))
    await store.start()
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events'")
        }
        conn.close()
        assert {"audit_events_ts", "audit_events_monitor", "audit_events_request_id"} <= indexes
    finally:
        await store.close()


async def test_disabled_store_does_nothing(tmp_path):
    path = tmp_path / "audit.db"
    counts = Counts()
    store = counts.store(AuditSettings(enabled=False, path=str(path)))
    await store.start()
    store.record(event())
    await store.flush()
    await store.close()
    assert not path.exists() and not counts.written and not counts.dropped


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError):
        AuditSettings(paht="x.db")
    with pytest.raises(ValueError):
        AuditSettings(sync="sometimes")
