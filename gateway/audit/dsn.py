"""PostgreSQL DSNs: telling one from a SQLite path, and hiding its password."""

from __future__ import annotations

import re

DSN_SCHEMES = ("postgresql://", "postgres://")
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def is_dsn(source: str) -> bool:
    """Whether ``source`` names a PostgreSQL database rather than a SQLite file."""
    return source.startswith(DSN_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` fit for a log line: any password replaced by ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", dsn))
