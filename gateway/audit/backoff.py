"""Reconnect delays for the audit writer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """Reconnect delays: ``initial_s`` doubling up to ``maximum_s``; ``reset`` on success."""

    initial_s: float = 0.05
    maximum_s: float = 5.0
    _next: float = 0.0

    def delay(self) -> float:
        current = self._next or self.initial_s
        self._next = min(current * 2, self.maximum_s)
        return min(current, self.maximum_s)

    def reset(self) -> None:
        self._next = 0.0
