"""Injected upstream faults: which requests misbehave, how, and where in the answer.

A soak (or a test) asks the simulator to answer a few percent of requests the way
a failing vLLM does, so the gateway's fault paths run under load:

- ``reset``: the connection drops (streamed: after some chunks; whole: half-way
  through a body whose Content-Length promised more).
- ``stall``: the answer stops for ``stall_s`` (or until the client leaves), then
  goes on; a gateway with a shorter idle / first-byte timeout gives up first.
- ``garbage``: bytes that are not the protocol (streamed: a broken event and the
  stream ends without ``[DONE]``; whole: a non-JSON body).

The draw is pure and seeded (like ``timing``): same seed, same faults in the same
requests. The HTTP side (``responses``) only acts on the drawn ``Fault``.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass

FAULT_KINDS = ("reset", "stall", "garbage")
GARBAGE_EVENT = b'data: {"choices": [{"delta": \x00\xff<html>not json\n\n'
GARBAGE_BODY = b"<html><body>502 upstream went wrong</body></html>"


class InjectedFault(Exception):
    """Raised inside the ASGI app to make the server drop the connection."""


@dataclass(frozen=True)
class FaultRates:
    """Share of requests (0-1) that get each fault; their sum is at most 1."""

    reset: float = 0.0
    stall: float = 0.0
    garbage: float = 0.0
    stall_s: float = 30.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {kind}={rate} is not between 0 and 1")
        if self.total > 1.0:
            raise ValueError(f"fault rates add up to {self.total:g}, more than 1")
        if self.stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {self.stall_s}")

    @property
    def total(self) -> float:
        return self.reset + self.stall + self.garbage


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    # Content chunks sent before it strikes (streamed answers; 0 = before the first).
    after_chunks: int
    stall_s: float


class FaultPlan:
    """Draws each request's fault from ``rates`` with an injected random source."""

    def __init__(self, rates: FaultRates, rng: random.Random) -> None:
        self.rates = rates
        self._rng = rng
        self.injected: Counter[str] = Counter()

    def draw(self, max_chunks: int) -> Fault | None:
        """The fault for the next request, or None; ``max_chunks`` bounds where it strikes."""
        rates = self.rates
        if rates.total == 0.0:
            return None  # no draw at all: a fault-free run keeps the seeded sequence of old
        roll = self._rng.random()
        for kind in FAULT_KINDS:
            rate = getattr(rates, kind)
            if roll < rate:
                self.injected[kind] += 1
                return Fault(kind, self._rng.randrange(max(1, max_chunks)), rates.stall_s)
            roll -= rate
        return None


class DropInjectedTracebacks(logging.Filter):
    """uvicorn logs every exception out of an app with its traceback; an injected reset
    is not news. Install on the ``uvicorn.error`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedFault)
