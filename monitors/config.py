"""Configuration of monitors, as it appears in the gateway's YAML settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Stage = Literal["input", "output"]
Action = Literal["block", "redact", "annotate", "shadow"]


class BatchSpec(BaseModel):
    """Micro-batching of a CPU/GPU-bound monitor: texts from concurrent requests share one call."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(2.0, ge=0)
    max_queue: int = Field(1024, ge=1)


class MonitorSpec(BaseModel):
    """One configured monitor.

    Keys other than the ones below are monitor-specific options (e.g. ``patterns`` for
    ``blocklist``, ``checkpoint`` for ``detoxify``); each monitor validates its own and
    names any key it does not know.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    id: str = ""
    stages: list[Stage] = Field(default_factory=lambda: ["input", "output"])
    action: Action = "block"
    threshold: float = Field(0.5, ge=0, le=1)
    label_thresholds: dict[str, float] = Field(default_factory=dict)
    timeout_ms: float = Field(1000, gt=0)
    on_error: Literal["open", "closed"] = "closed"
    batch: BatchSpec = Field(default_factory=BatchSpec)

    @model_validator(mode="after")
    def _default_id(self) -> MonitorSpec:
        if not self.id:
            self.id = self.name
        if not self.stages:
            raise ValueError("stages must name at least one of: input, output")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The monitor-specific keys."""
        return dict(self.model_extra or {})


class StreamingSpec(BaseModel):
    """How output monitors see a streamed completion.

    ``holdback``: text is released only after the window containing it passed the
    output monitors; the last ``overlap_chars`` stay held so a string split across
    windows is still seen whole. ``stream_first``: text is released at once and
    checked behind; a hit cuts the stream.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["holdback", "stream_first"] = "holdback"
    window_chars: int = Field(200, ge=1)
    overlap_chars: int = Field(50, ge=0)
    # holdback: also check and release once the oldest held text has waited this long
    # (the overlap stays held). Bounds the TTFT hold-back adds, at the price of more
    # monitor calls. 0 = only full windows are checked.
    max_hold_ms: float = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap_below_window(self) -> StreamingSpec:
        if self.overlap_chars >= self.window_chars:
            raise ValueError("streaming.overlap_chars must be smaller than streaming.window_chars")
        return self
