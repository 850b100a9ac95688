"""The scenario matrix: which monitor sets `taxgate bench` compares, from a YAML file.

Format (see ``loadtest/bench_matrix.yaml``)::

    gateway: {...}              # settings merged into every gateway's config (e.g. audit)
    streaming: {...}            # default streaming settings for every set
    sets:
      NAME:
        description: text       # shown in the report
        streaming: {...}        # this set's streaming settings, over the default
        local_detoxify: tiny    # tiny | bert-base: build a random-weight Detoxify
                                # checkpoint locally for detoxify monitors without one
        monitors: [{name: ..., stages: [...], action: ..., ...}, ...]

Monitor entries are validated here with the gateway's own models, so a typo is
reported before any process starts, naming the file and the key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.settings import StreamingSpec
from monitors.config import MonitorSpec

DEFAULT_MATRIX = Path(__file__).resolve().parent.parent / "bench_matrix.yaml"
RESERVED_NAMES = ("direct", "gateway")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class MatrixError(ValueError):
    """A matrix file that cannot be used; the message names the file and the bad key."""


class MonitorSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    streaming: dict[str, Any] = Field(default_factory=dict)
    local_detoxify: Literal["tiny", "bert-base"] | None = None
    monitors: list[MonitorSpec] = Field(min_length=1)

    def monitor_configs(self) -> list[dict[str, Any]]:
        """The monitors as plain dicts for a gateway config file (options included)."""
        return [spec.model_dump(mode="json") for spec in self.monitors]


class Matrix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway: dict[str, Any] = Field(default_factory=dict)
    streaming: dict[str, Any] = Field(default_factory=dict)
    sets: dict[str, MonitorSet] = Field(min_length=1)

    @field_validator("gateway")
    @classmethod
    def _no_owned_keys(cls, extra: dict[str, Any]) -> dict[str, Any]:
        owned = sorted({"upstreams", "host", "port", "monitors", "streaming"} & set(extra))
        if owned:
            raise ValueError(f"{', '.join(owned)} is set by the bench per scenario; remove it")
        return extra

    @field_validator("sets")
    @classmethod
    def _valid_names(cls, sets: dict[str, MonitorSet]) -> dict[str, MonitorSet]:
        for name in sets:
            if name in RESERVED_NAMES:
                raise ValueError(f"{name!r} is a built-in scenario; name the set otherwise")
            if not _NAME.match(name):
                raise ValueError(f"set name {name!r}: use lower-case letters, digits, - and _")
        return sets

    @model_validator(mode="after")
    def _valid_streaming(self) -> Matrix:
        for name in self.sets:
            try:
                self.streaming_for(name)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"sets.{name}.streaming (over the default): {problems}") from None
        return self

    def streaming_for_default(self) -> dict[str, Any]:
        """The matrix-wide streaming settings (the no-monitor gateway uses them)."""
        return StreamingSpec.model_validate(self.streaming).model_dump(mode="json")

    def streaming_for(self, name: str) -> dict[str, Any]:
        """The set's streaming settings over the matrix default, validated."""
        merged = {**self.streaming, **self.sets[name].streaming}
        return StreamingSpec.model_validate(merged).model_dump(mode="json")

    def select(self, names: list[str] | None) -> list[str]:
        """The set names to run, in matrix order unless ``names`` orders them."""
        if not names:
            return list(self.sets)
        unknown = [n for n in names if n not in self.sets]
        if unknown:
            raise MatrixError(f"unknown monitor set(s) {', '.join(unknown)}; the matrix has {', '.join(self.sets)}")
        return list(dict.fromkeys(names))


def parse_matrix(data: Any, source: str = "<matrix>") -> Matrix:
    if not isinstance(data, dict):
        raise MatrixError(f"{source}: expected a mapping with a 'sets' key")
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise MatrixError(_describe(exc, source)) from None
    return matrix


def load_matrix(path: Path | None = None) -> Matrix:
    path = Path(path) if path is not None else DEFAULT_MATRIX
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MatrixError(f"cannot read scenario matrix {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MatrixError(f"scenario matrix {path} is not valid YAML: {exc}") from None
    return parse_matrix(data, str(path))


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid scenario matrix {source}:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {key}: {error['msg']}")
    return "\n".join(lines)
