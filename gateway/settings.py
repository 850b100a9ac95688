"""The one settings object: YAML file, then ``OTEL_*`` and ``TAXGATE_*`` env, then CLI flags,
validated once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.audit.settings import AuditSettings
from gateway.tracing.settings import TracingSettings, tracing_from_env
from gateway.uncheckable import UncheckablePolicy
from monitors.config import BudgetSpec, MonitorSpec

ENV_PREFIX = "TAXGATE_"
# Env values for these keys are comma-separated lists.
LIST_KEYS = {"upstreams", "api_keys"}


class SettingsError(ValueError):
    """Invalid configuration; the message names the bad key and says what is expected."""


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect_s: float = Field(5.0, gt=0, description="TCP connect to an upstream")
    first_byte_s: float = Field(300.0, gt=0, description="request sent -> response headers / first chunk")
    idle_s: float = Field(120.0, gt=0, description="longest gap between two streamed chunks")
    # Client side: a connection that trickles its request must not hold a socket and a
    # task forever (slowloris). uvicorn bounds only the idle keep-alive gap.
    client_header_s: float = Field(
        10.0, gt=0, description="connection open / request started -> all request headers received, else 408 and close"
    )
    client_body_s: float = Field(
        30.0, gt=0, description="request headers received -> whole body received, else 408 and close"
    )


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(5.0, gt=0, description="how often each upstream is probed")
    eject_after: int = Field(3, ge=1, description="consecutive failures before an upstream is ejected")


class StreamingSpec(BaseModel):
    """How output monitors see a streamed answer.

    ``holdback``: a character is released as soon as every enforcing output monitor has
    checked a text containing it and none can still change its verdict on it (each
    monitor's ``stream_hold``); a check covers the new text plus ``overlap_chars`` of
    text before it, as context. ``stream_first``: text is released at once and checked
    behind; a hit cuts the stream.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["holdback", "stream_first"] = "holdback"
    overlap_chars: int = Field(50, ge=0)
    # The most text one field may hold; what happens there is ``at_max_hold`` (counted in
    # taxgate_stream_hold_cap_total): ``release`` lets it out checked but undecided,
    # ``block`` ends the stream.
    max_hold_chars: int = Field(4096, ge=1)
    at_max_hold: Literal["release", "block"] = "release"


class MetricsEndpoint(BaseModel):
    """Who may read ``/metrics`` and ``/ready`` (they name upstreams and models)."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(
        None, description="'host:port' of a second listener that alone serves /metrics and /ready (none: the main port)"
    )
    auth: bool = Field(
        False, description="/metrics and /ready need an API key from api_keys, like the completion routes"
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str | None) -> str | None:
        if listen is not None:
            split_listen(listen)
        return listen

    @property
    def address(self) -> tuple[str, int] | None:
        return split_listen(self.listen) if self.listen is not None else None


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` -> (host, port); ValueError saying what is
    expected otherwise."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{listen!r} is not 'host:port' with a port 1-65535 (e.g. 127.0.0.1:9464)")
    return host, int(port)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    upstreams: list[str] = Field(min_length=1)
    api_keys: list[SecretStr] = Field(default_factory=list)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line plus headers; above it 431")
    max_in_flight: int = Field(0, ge=0, description="0 = unlimited; beyond it answer 503")
    connect_retries: int = Field(1, ge=0, description="other replicas tried when a connect fails")
    max_connections: int = Field(1024, ge=1)
    # Below the 5 s after which uvicorn (and so vLLM) closes an idle connection: reusing one
    # the server is closing at that moment fails the request with a ReadError (502).
    keepalive_s: float = Field(4.0, ge=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    health: Health = Field(default_factory=Health)
    monitors: list[MonitorSpec] = Field(default_factory=list)
    streaming: StreamingSpec = Field(default_factory=StreamingSpec)
    # The most safety may add per stage check, in ms; degrade: skip monitors give way to it.
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    # Input the monitors cannot read as text (gateway/uncheckable.py); applies when an
    # enforcing input monitor is configured.
    uncheckable_input: UncheckablePolicy = Field(default_factory=UncheckablePolicy)
    # Tool definitions (names, descriptions, parameter schemas) are prompt text too.
    check_tools: bool = True
    metrics: MetricsEndpoint = Field(default_factory=MetricsEndpoint)
    # OpenTelemetry traces (gateway/tracing/); off unless an OTLP endpoint is set.
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # SIGTERM: stop accepting, let requests finish this long, then end open streams with
    # an SSE error event (code shutting_down) instead of cutting them.
    shutdown_grace_s: float = Field(10.0, ge=0)
    refusal_message: str = "I can't help with that: the response was blocked by a safety policy."
    log_prompts: bool = False

    @field_validator("upstreams")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        cleaned = []
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
            cleaned.append(url.rstrip("/").removesuffix("/v1"))
        return cleaned

    @model_validator(mode="after")
    def _metrics_port_free(self) -> Settings:
        address = self.metrics.address
        if address is not None and address[1] == self.port:
            raise ValueError(
                f"metrics.listen {self.metrics.listen!r} uses the main port "
                f"{self.port}; give the metrics listener its own port"
            )
        if self.metrics.auth and not self.api_keys:
            raise ValueError("metrics.auth is true but api_keys is empty: there is no key to ask for")
        return self


def load_settings(
    config_file: Path | None = None, *, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Merge the sources (later wins) and validate; raise SettingsError naming the bad key."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data = _read_yaml(config_file)
    # The standard OTEL_* variables feed ``tracing``; TAXGATE_TRACING__* ones win over them.
    otel = tracing_from_env(env or {})
    if otel:
        _deep_merge(data, {"tracing": otel})
    _deep_merge(data, _from_env(env or {}))
    _deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping of keys, not a {type(loaded).__name__}")
    return loaded


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``TAXGATE_PORT=9000``, ``TAXGATE_UPSTREAMS=a,b``, ``TAXGATE_AUDIT__PATH=x.db``."""
    data: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or not raw:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue  # other tools' variables (TAXGATE_LOG_LEVEL, ...), not settings
        if path[0] in LIST_KEYS:
            value: Any = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            value = yaml.safe_load(raw)
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return data


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _describe(exc: ValidationError, source: Path | None) -> str:
    where = f" in {source}" if source else ""
    lines = [f"invalid configuration{where}:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {key}: {error['msg']}")
    return "\n".join(lines)
