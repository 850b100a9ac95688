"""Configuration of monitors, as it appears in the gateway's YAML settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Stage = Literal["input", "output"]
Action = Literal["block", "redact", "annotate", "shadow"]
# The texts of an answer a client reads (see gateway/answer.py); input texts are "content".
FieldKind = Literal["content", "refusal", "reasoning", "tool_calls", "logprobs"]


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
    # Which texts of an answer this monitor reads (output stage); None = all of them.
    # E.g. leave reasoning to a judge: ``fields: [content, tool_calls]``.
    fields: list[FieldKind] | None = None
    # Streaming: how much trailing text this monitor needs held before it can judge it.
    # ``monitor``: the monitor's own rule (pattern monitors: a possible partial match;
    # classifiers: the partial word); ``word``, ``sentence``, or ``chars`` (fixed blocks of
    # ``stream_hold_chars``).
    stream_hold: Literal["monitor", "word", "sentence", "chars"] = "monitor"
    stream_hold_chars: int = Field(200, ge=1)
    # Under a stage budget (``budgets``): ``skip`` lets this monitor be skipped for a
    # request when its predicted wait does not fit the budget, or released from when it
    # runs past it (its verdict then recorded like a shadow one); ``never`` waits for it
    # (a fail-closed one sheds the request with 503 instead). Skipping is failing open, so
    # ``on_error: closed`` and ``degrade: skip`` are refused together.
    degrade: Literal["skip", "never"] = "never"

    @model_validator(mode="after")
    def _default_id(self) -> MonitorSpec:
        if not self.id:
            self.id = self.name
        if not self.stages:
            raise ValueError("stages must name at least one of: input, output")
        if self.degrade == "skip" and self.on_error == "closed" and self.action != "shadow":
            raise ValueError(
                f"monitor {self.id!r}: degrade: skip lets checks through unchecked, which "
                "on_error: closed forbids (on_error defaults to closed); set on_error: open "
                "or degrade: never"
            )
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The monitor-specific keys."""
        return dict(self.model_extra or {})


class BudgetSpec(BaseModel):
    """How long one check of a stage may take before ``degrade: skip`` monitors give way.

    ``input``: the most the input monitors may add to a request. ``output``: the most one
    window check may hold a stream. None: no budget (every check is waited for, up to
    each monitor's ``timeout_ms``).
    """

    model_config = ConfigDict(extra="forbid")

    input: float | None = Field(None, gt=0, description="ms")
    output: float | None = Field(None, gt=0, description="ms")

    def seconds(self, stage: str) -> float | None:
        ms = getattr(self, stage)
        return None if ms is None else ms / 1000.0
