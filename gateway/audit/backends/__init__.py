"""The audit databases: SQLite (the default, one file) and PostgreSQL (``audit.dsn``).

psycopg is imported only when a PostgreSQL backend connects, so a SQLite deployment does
not need it installed.
"""

from __future__ import annotations

from pathlib import Path

from gateway.audit.backends.base import AuditBackend, AuditReader
from gateway.audit.backends.postgres import PostgresBackend, PostgresReader
from gateway.audit.backends.sqlite import SQLiteBackend, SQLiteReader
from gateway.audit.dsn import is_dsn
from gateway.audit.settings import AuditSettings


def make_backend(settings: AuditSettings, replica: str) -> AuditBackend:
    """PostgreSQL when ``audit.dsn`` is set, else the SQLite file at ``audit.path``."""
    if settings.dsn is not None:
        return PostgresBackend(settings.dsn.get_secret_value(), application_name=f"taxgate {replica}"[:63])
    return SQLiteBackend(settings.path)


def open_reader(source: str | Path) -> AuditReader:
    """A reader for a SQLite file path or a ``postgresql://`` DSN."""
    if is_dsn(str(source)):
        return PostgresReader(str(source))
    return SQLiteReader(source)
