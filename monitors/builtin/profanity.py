"""Profanity: alt-profanity-check's linear model (ships inside its wheel, works offline).

Scores whole texts; no spans. Cheap (about 0.1 ms per text), so batching helps little,
but it still runs in the batcher's thread to keep scikit-learn off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from monitors.base import Finding, Monitor, MonitorLoadError
from monitors.config import MonitorSpec
from monitors.registry import parse_options

LABEL = "profanity"


class ProfanityOptions(BaseModel):
    """The monitor has no options; the model forbids stray keys so typos are reported."""

    model_config = ConfigDict(extra="forbid")


class ProfanityMonitor(Monitor):
    def __init__(self, predict_prob: Callable[[list[str]], Sequence[float]]) -> None:
        self._predict_prob = predict_prob

    def check(self, texts: Sequence[str]) -> list[Finding]:
        if not texts:
            return []
        probabilities = self._predict_prob(list(texts))
        return [Finding(score=float(p), labels={LABEL: float(p)}) for p in probabilities]


def create(spec: MonitorSpec) -> ProfanityMonitor:
    parse_options(spec, ProfanityOptions)
    try:
        # Imported here: loading the package unpickles its model (about a second).
        from profanity_check import predict_prob
    except ImportError as exc:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: alt-profanity-check is not installed ({exc}); "
            "pip install alt-profanity-check"
        ) from exc
    return ProfanityMonitor(predict_prob)
