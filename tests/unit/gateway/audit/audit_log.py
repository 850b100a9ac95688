"""A SQLite audit log written through the real writer, for the reader and CLI tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from gateway.audit.event import AuditEvent
from gateway.audit.settings import AuditSettings
from gateway.audit.store import AuditStore


def write_events(path: str, events: Iterable[AuditEvent]) -> None:
    """Write ``events`` to the audit database at ``path`` and close it (all committed)."""

    async def write() -> None:
        store = AuditStore(AuditSettings(path=path))
        await store.start()
        for item in events:
            store.record(item)
        await store.close()

    asyncio.run(write())
