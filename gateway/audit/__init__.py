"""The audit log: every audited monitor verdict, written off the request path.

``store.AuditStore`` owns the queue and the writer thread and talks to one
``backends.base.AuditBackend`` (SQLite in ``backends/sqlite.py``, PostgreSQL in
``backends/postgres.py``; schema versions in ``migrations.py``). ``query.py`` reads the log
back (the ``taxgate audit`` command, ``cli.py``) through the filter of ``filter.py``. The
stored record is ``event.AuditEvent``. Neither the pipeline nor the proxy knows which backend
runs. A backend's methods are blocking: they run on the writer thread (or in the CLI), never
on the event loop.
"""
