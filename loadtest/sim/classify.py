"""The simulator's guard classifier: what vLLM's pooling runner answers on ``/classify``,
and how long a GPU takes to answer it.

Pure: no I/O, no clock, no asyncio (``ClassifyEngine`` in ``classify_engine.py`` drives
it in real time). Randomness comes from an injected ``random.Random``.

Timing follows how a pooling engine serves a sequence classifier: a call first costs
the API server's own work (parsing, tokenising: ``call_overhead_s``, which does not
stall the engine); then its texts join the next engine step with every other call
waiting by then, and a step costs a fixed part (the weights read once) plus a part per
token of all its texts (one forward pass, no decode). A step holds at most
``max_batch_tokens``; the rest waits for the next. So one call of 64 texts costs far
less than 64 calls of one, which is what batching across requests is for.

Scoring: a text is ``unsafe`` with probability 0.95 when it contains one of a few
plainly hostile words, else 0.03. Deterministic, so the bench's flags are stable; it
stands in for a model, it does not claim to be one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

LABELS = ("safe", "unsafe")
_HOSTILE = re.compile(r"\b(?:idiot|stupid|hate|kill|moron|die|ignore (?:all )?previous instructions)\b", re.IGNORECASE)
UNSAFE_P = 0.95
SAFE_P = 0.03


def score(text: str) -> list[float]:
    """The probabilities of ``LABELS`` for ``text``."""
    unsafe = UNSAFE_P if _HOSTILE.search(text) else SAFE_P
    return [1.0 - unsafe, unsafe]


@dataclass(frozen=True)
class ClassifierProfile:
    """A served classifier's costs, in seconds."""

    name: str
    call_overhead_s: float
    step_base_s: float
    per_token_s: float
    max_batch_tokens: int
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if min(self.call_overhead_s, self.step_base_s, self.per_token_s) < 0:
            raise ValueError(f"classifier profile {self.name!r} has a negative cost")
        if self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be >= 1")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def step_time(self, tokens: int, rng: random.Random) -> float:
        """Seconds one engine step scoring ``tokens`` tokens (all its texts) takes."""
        return self._jittered(self.step_base_s + self.per_token_s * tokens, rng)

    def overhead_time(self, rng: random.Random) -> float:
        return self._jittered(self.call_overhead_s, rng)

    def _jittered(self, seconds: float, rng: random.Random) -> float:
        if self.jitter and seconds:
            seconds *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return seconds


# Rough figures for a BERT-base-sized guard (Prompt Guard 2 86M, toxic-bert) served by vLLM
# on one GPU: ~1 ms of API-server work a call, a step of ~2 ms plus ~3 us a token.
CLASSIFIER_PROFILES = {
    profile.name: profile
    for profile in (
        ClassifierProfile(
            "bert-base-gpu",
            call_overhead_s=0.001,
            step_base_s=0.002,
            per_token_s=3e-6,
            max_batch_tokens=16384,
            jitter=0.05,
        ),
        ClassifierProfile("instant", call_overhead_s=0.0, step_base_s=0.0, per_token_s=0.0, max_batch_tokens=1 << 30),
    )
}


def take_step(waiting: list[int], max_batch_tokens: int) -> int:
    """How many of the waiting calls (their token counts, oldest first) the next step
    takes: as many as fit ``max_batch_tokens``, and always the first (a call larger than
    a step still runs, alone)."""
    total = 0
    for taken, tokens in enumerate(waiting):
        if taken and total + tokens > max_batch_tokens:
            return taken
        total += tokens
    return len(waiting)


def simulate_calls(profile: ClassifierProfile, rng: random.Random, calls: list[tuple[float, int]]) -> list[float]:
    """Virtual time: when each call (arrival time, tokens), sorted by arrival, is answered."""
    ready = sorted((arrival + profile.overhead_time(rng), i, tokens) for i, (arrival, tokens) in enumerate(calls))
    done = [0.0] * len(calls)
    now = 0.0
    position = 0
    while position < len(ready):
        now = max(now, ready[position][0])
        waiting = []
        while position + len(waiting) < len(ready) and ready[position + len(waiting)][0] <= now:
            waiting.append(ready[position + len(waiting)])
        taken = take_step([tokens for _, _, tokens in waiting], profile.max_batch_tokens)
        now += profile.step_time(sum(tokens for _, _, tokens in waiting[:taken]), rng)
        for _, index, _ in waiting[:taken]:
            done[index] = now
        position += taken
    return done
