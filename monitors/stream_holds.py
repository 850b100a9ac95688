"""Streaming: how much of a stage's text must stay held for every enforcing monitor.

Each monitor's ``stream_hold`` picks a rule from ``monitors.holds`` (or the monitor's own
``hold``); the stage holds from the earliest place any of them asks for. A monitor's
``hold`` that raises holds everything: said, counted, never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from monitors.holds import chars_hold, sentence_hold, word_hold
from monitors.recorder import VerdictRecorder
from monitors.runner import MonitorRunner

__all__ = ["StageHolds"]

logger = logging.getLogger(__name__)


class StageHolds:
    """The holds of the enforcing (not shadow) monitors at one stage."""

    def __init__(self, runners: Sequence[MonitorRunner], stage: str, recorder: VerdictRecorder) -> None:
        self._runners = [r for r in runners if stage in r.spec.stages and r.spec.action != "shadow"]
        self._stage = stage
        self._recorder = recorder

    @property
    def context_chars(self) -> int:
        """How far back a check's context must be able to reach for every enforcing
        monitor to read whole sentences (``Monitor.context_chars``)."""
        return max((runner.monitor.context_chars for runner in self._runners), default=0)

    @property
    def min_new_chars(self) -> int:
        """The fewest unreleased characters for which ``hold`` may release any: the smallest
        any enforcing monitor needs (``Monitor.min_new_chars``; a ``chars`` block's size)."""
        return min((self._min_new(runner) for runner in self._runners), default=0)

    @staticmethod
    def _min_new(runner: MonitorRunner) -> int:
        spec = runner.spec
        if spec.stream_hold == "monitor":
            return runner.monitor.min_new_chars
        return spec.stream_hold_chars if spec.stream_hold == "chars" else 0

    def hold(self, text: str, start: int, kind: str = "content") -> int:
        """Where in ``text`` the part that must stay held begins — the earliest any
        enforcing monitor that reads ``kind`` asks for — never before ``start`` (the
        first character not released yet)."""
        hold = len(text)
        for runner in self._runners:
            fields = runner.spec.fields
            if fields is not None and kind not in fields:
                continue
            hold = min(hold, self._one(runner, text, start))
        return max(start, hold)

    def _one(self, runner: MonitorRunner, text: str, start: int) -> int:
        spec = runner.spec
        if spec.stream_hold == "monitor":
            try:
                return runner.monitor.hold(text, start)
            except Exception as exc:  # holding everything is safe: said, counted, never silent
                logger.warning("monitor %r hold() failed: %s; holding the text", spec.id, type(exc).__name__)
                self._recorder.hold_failed(spec.id, self._stage)
                return start
        if spec.stream_hold == "word":
            return word_hold(text)
        if spec.stream_hold == "sentence":
            return sentence_hold(text)
        return chars_hold(text, start, spec.stream_hold_chars)
