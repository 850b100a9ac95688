"""``tracing:`` in the gateway settings, and the standard ``OTEL_*`` variables that feed it.

The variables are read once, where the settings are loaded (``load_settings``), never deep
inside: a set variable wins over the file's key, as ``TAXGATE_*`` ones do. Tracing is off
unless an endpoint is configured, and ``OTEL_SDK_DISABLED=true`` turns it off whatever else
says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

OtlpProtocol = Literal["http/protobuf", "grpc"]
Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
TRUE = ("true", "1", "yes", "on")


class TracingSettings(BaseModel):
    """``tracing:`` in the gateway settings."""

    model_config = ConfigDict(extra="forbid")

    # The collector's OTLP base URL (http://collector:4318 for http/protobuf, :4317 for
    # grpc); none: tracing off. ``traces_endpoint`` is the full URL of the traces signal
    # (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and wins over it.
    endpoint: str | None = None
    traces_endpoint: str | None = None
    protocol: OtlpProtocol = "http/protobuf"
    service_name: str = "taxgate"
    sampler: Sampler = "parentbased_always_on"
    sampler_arg: float = Field(1.0, ge=0, le=1, description="ratio for the traceidratio samplers")
    # Sent with every export (an API key of a hosted backend): never logged.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, description="one export's limit, retries included")
    disabled: bool = Field(False, description="OTEL_SDK_DISABLED: off whatever else is set")
    # The batch processor: spans queue here and leave on its thread; a full queue drops.
    queue_max: int = Field(2048, ge=1)
    batch_max: int = Field(512, ge=1)
    schedule_delay_ms: float = Field(5000, ge=0)
    # Under a collector that keeps failing, one warning per interval (with the count).
    failure_log_interval_s: float = Field(60.0, gt=0)

    @field_validator("endpoint", "traces_endpoint")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL (e.g. http://otel-collector:4318)")
        return url

    @model_validator(mode="after")
    def _batch_fits(self) -> TracingSettings:
        if self.batch_max > self.queue_max:
            raise ValueError(f"batch_max {self.batch_max} exceeds queue_max {self.queue_max}")
        return self

    @property
    def enabled(self) -> bool:
        return not self.disabled and (self.endpoint is not None or self.traces_endpoint is not None)

    def export_url(self) -> str:
        """Where spans go: the signal URL as given, else the base URL (+ ``/v1/traces`` over
        HTTP, as the OTLP exporter specification says; a gRPC endpoint is host and port)."""
        if self.traces_endpoint is not None:
            return self.traces_endpoint
        assert self.endpoint is not None, "export_url() of tracing settings that are off"
        if self.protocol == "grpc":
            return self.endpoint
        return self.endpoint.rstrip("/") + "/v1/traces"


# OTEL_* variable -> key of ``tracing:``. The traces-specific variables win over the generic.
ENV_KEYS = (
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces_endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "protocol"),
    ("OTEL_SERVICE_NAME", "service_name"),
    ("OTEL_TRACES_SAMPLER", "sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "sampler_arg"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "headers"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "headers"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "timeout_s"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "timeout_s"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "queue_max"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "batch_max"),
    ("OTEL_BSP_SCHEDULE_DELAY", "schedule_delay_ms"),
    ("OTEL_SDK_DISABLED", "disabled"),
)


def tracing_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``tracing:`` keys the ``OTEL_*`` variables in ``env`` set (empty ones ignored)."""
    data: dict[str, Any] = {}
    for name, key in ENV_KEYS:
        raw = env.get(name, "").strip()
        if raw:
            data[key] = _value(key, raw)
    return data


def _value(key: str, raw: str) -> Any:
    if key == "headers":
        return parse_headers(raw)
    if key == "timeout_s":
        return float(raw) / 1000.0 if raw.replace(".", "", 1).isdigit() else raw  # spec: ms
    if key == "disabled":
        return raw.lower() in TRUE
    return raw


def parse_headers(raw: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` (values URL-encoded, as the specification says)."""
    from urllib.parse import unquote

    headers: dict[str, str] = {}
    for pair in raw.split(","):
        name, sep, value = pair.partition("=")
        if sep and name.strip():
            headers[unquote(name.strip()).lower()] = unquote(value.strip())
    return headers
