"""``audit:`` in the gateway settings: where the audit log goes and how it is written."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from gateway.audit.dsn import DSN_SCHEMES, is_dsn


class AuditSettings(BaseModel):
    """``audit:`` in the gateway settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: str = "taxgate-audit.db"
    # postgresql://user@host:port/db: one database shared by every replica (instead of the
    # SQLite file). Put the password in PGPASSWORD or ~/.pgpass, or in the DSN from a Secret.
    dsn: SecretStr | None = None
    # Written with every event; empty means the host name (the pod name on Kubernetes).
    replica: str = ""
    # batch: commit every batch_max events or flush_interval_ms; always: the gateway awaits
    # the commit of a request's events before releasing its response.
    sync: Literal["batch", "always"] = "batch"
    batch_max: int = Field(256, ge=1)
    flush_interval_ms: float = Field(200, ge=0)
    queue_max: int = Field(100_000, ge=1)
    # sync: always on a slow database: the longest a response waits for its commit (0: no
    # limit). Past it the response goes out and the events stay queued.
    sync_timeout_s: float = Field(5.0, ge=0)
    # A clean shutdown with the database down keeps retrying this long, then counts the rest.
    drain_timeout_s: float = Field(10.0, ge=0)
    retry_max_s: float = Field(5.0, gt=0, description="longest wait between reconnects")
    retention_days: float | None = Field(None, gt=0, description="delete older events")
    retention_interval_s: float = Field(3600.0, gt=0)

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is not None and not is_dsn(dsn.get_secret_value()):
            raise ValueError(
                f"must be a PostgreSQL URL starting with {' or '.join(DSN_SCHEMES)}"
                " (e.g. postgresql://taxgate@db:5432/taxgate)"
            )
        return dsn
