"""The audit log's errors, shared by the writer, the backends and the readers."""


class AuditError(RuntimeError):
    """The audit database cannot be opened, written or read."""


class AuditUnavailable(AuditError):
    """The database cannot be reached right now (down, restarting, network): worth a retry."""
