"""The simulator's timing model: latency profiles and a continuous-batching scheduler.

Pure logic: no I/O, no clock, no asyncio. Randomness comes from an injected
``random.Random`` so a seed pins every timing. ``engine.py`` drives this model in
real time; ``simulate_closed_loop`` drives it on a virtual clock (for tests and
for sanity-checking a profile without waiting).

The model follows vLLM's scheduler: at most ``max_num_seqs`` sequences run, the
rest wait in FIFO order; each engine step admits waiting sequences into free
slots (their prefill runs in that step and yields their first token) and emits
one token for every running sequence. A step costs a fixed part (weights read
once per step), a part per running sequence (KV-cache reads) and the prefill of
the prompts admitted in it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LatencyProfile:
    """How long a model takes, as a handful of linear costs.

    ``request_overhead_s`` is the API-server work before the engine sees a request
    (parsing, chat template, tokenising); it delays the request but does not stall
    the engine, which is why it is apart from the step cost.
    """

    name: str
    prefill_s_per_token: float
    step_base_s: float
    step_per_seq_s: float
    max_num_seqs: int
    jitter: float = 0.0
    request_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        costs = (self.prefill_s_per_token, self.step_base_s, self.step_per_seq_s, self.request_overhead_s)
        if min(costs) < 0:
            raise ValueError(f"profile {self.name!r} has a negative cost")

    def step_time(self, running: int, prefill_tokens: int, rng: random.Random) -> float:
        """Seconds one engine step takes with ``running`` sequences and that much prefill."""
        seconds = self.step_base_s + self.step_per_seq_s * running + self.prefill_s_per_token * prefill_tokens
        return self._jittered(seconds, rng)

    def overhead_time(self, rng: random.Random) -> float:
        """Seconds between a request's arrival and its entry into the waiting queue."""
        return self._jittered(self.request_overhead_s, rng)

    def _jittered(self, seconds: float, rng: random.Random) -> float:
        # Drawing only when jitter is on keeps jitter-free profiles from consuming
        # random numbers, so turning jitter off leaves other seeded draws unchanged.
        if self.jitter and seconds:
            seconds *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return seconds


# Figures are rough fits to public vLLM numbers, not measurements of ours; what matters
# is the shape (ITL grows with the batch, TTFT jumps once requests queue).
PROFILES: dict[str, LatencyProfile] = {
    profile.name: profile
    for profile in (
        # Llama-3.1-8B, bf16, one H100: ~12 ms ITL alone, ~47 ms with 256 running;
        # ~100 ms TTFT for a short prompt at low load.
        LatencyProfile(
            "llama-8b-h100",
            prefill_s_per_token=5e-5,
            step_base_s=0.0115,
            step_per_seq_s=1.4e-4,
            max_num_seqs=256,
            jitter=0.05,
            request_overhead_s=0.075,
        ),
        # Llama-3.1-70B, bf16, four H100s (tensor parallel): ~22 ms ITL alone.
        LatencyProfile(
            "llama-70b-h100x4",
            prefill_s_per_token=1.2e-4,
            step_base_s=0.022,
            step_per_seq_s=2.5e-4,
            max_num_seqs=256,
            jitter=0.05,
            request_overhead_s=0.09,
        ),
        # Fast and with few slots, so tests reach the queueing knee with a handful of streams.
        LatencyProfile(
            "tiny-cpu",
            prefill_s_per_token=1e-5,
            step_base_s=0.002,
            step_per_seq_s=2e-4,
            max_num_seqs=8,
            jitter=0.1,
            request_overhead_s=0.001,
        ),
        # For measuring the gateway alone. A zero step would make the engine loop spin a
        # core whenever a stream is open; 1 ms (1,000 tokens/s per stream) is far faster
        # than any real model, yet bounded.
        LatencyProfile("instant", prefill_s_per_token=0.0, step_base_s=0.001, step_per_seq_s=0.0, max_num_seqs=1024),
    )
}


def get_profile(name: str) -> LatencyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown latency profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


@dataclass(eq=False)
class Sequence:
    """One request as the scheduler sees it. ``payload`` is the caller's, never read here.

    ``state`` moves new -> waiting -> running -> finished, or to aborted from any
    of the first three.
    """

    prompt_tokens: int
    output_tokens: int
    payload: Any = None
    emitted: int = 0
    state: str = "new"

    @property
    def aborted(self) -> bool:
        return self.state == "aborted"


@dataclass
class StepResult:
    """What one step did. ``emitted`` includes ``admitted``: their first token came out."""

    duration_s: float
    admitted: list[Sequence] = field(default_factory=list)
    emitted: list[Sequence] = field(default_factory=list)
    finished: list[Sequence] = field(default_factory=list)


class BatchScheduler:
    """Continuous batching: up to ``max_num_seqs`` running, the rest waiting (FIFO)."""

    def __init__(self, profile: LatencyProfile, rng: random.Random) -> None:
        self.profile = profile
        self._rng = rng
        # A dict keeps admission order and makes abort O(1).
        self._running: dict[int, Sequence] = {}
        self._waiting: deque[Sequence] = deque()
        # Aborted waiting sequences stay in the deque until they reach its head
        # (removing from the middle is O(n)); this counts the live ones.
        self._num_waiting = 0

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return self._num_waiting

    @property
    def has_work(self) -> bool:
        return bool(self._running) or self._num_waiting > 0

    def live(self) -> list[Sequence]:
        """Every sequence running or waiting, running first."""
        waiting = [seq for seq in self._waiting if seq.state == "waiting"]
        return [*self._running.values(), *waiting]

    def add(self, seq: Sequence) -> None:
        """Queue a sequence. One aborted before it got here is dropped."""
        if seq.state == "aborted":
            return
        if seq.state != "new":
            raise ValueError(f"sequence already {seq.state}")
        if seq.output_tokens < 1:
            raise ValueError("a sequence must produce at least one token")
        seq.state = "waiting"
        self._waiting.append(seq)
        self._num_waiting += 1

    def abort(self, seq: Sequence) -> bool:
        """Free the sequence's slot (or queue place). False if it had already ended."""
        if seq.state == "running":
            del self._running[id(seq)]
        elif seq.state == "waiting":
            self._num_waiting -= 1
        elif seq.state != "new":
            return False
        seq.state = "aborted"
        return True

    def step(self) -> StepResult:
        """Plan one engine step: admit, then emit a token for every running sequence."""
        admitted: list[Sequence] = []
        prefill_tokens = 0
        limit = self.profile.max_num_seqs
        while self._waiting and len(self._running) < limit:
            seq = self._waiting.popleft()
            if seq.state == "aborted":
                continue
            self._num_waiting -= 1
            seq.state = "running"
            self._running[id(seq)] = seq
            admitted.append(seq)
            prefill_tokens += seq.prompt_tokens
        duration = self.profile.step_time(len(self._running), prefill_tokens, self._rng)
        emitted = list(self._running.values())
        finished = []
        for seq in emitted:
            seq.emitted += 1
            if seq.emitted >= seq.output_tokens:
                finished.append(seq)
        for seq in finished:
            seq.state = "finished"
            del self._running[id(seq)]
        return StepResult(duration, admitted, emitted, finished)


@dataclass(frozen=True)
class RequestTiming:
    """One simulated request's latencies, measured like ``vllm bench serve``."""

    ttft_s: float
    e2e_s: float
    output_tokens: int

    @property
    def tpot_s(self) -> float:
        if self.output_tokens < 2:
            return 0.0
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


def simulate_closed_loop(
    profile: LatencyProfile,
    rng: random.Random,
    *,
    concurrency: int,
    requests_per_client: int,
    prompt_tokens: int,
    output_tokens: int,
) -> list[RequestTiming]:
    """Run ``concurrency`` clients that each send a request as soon as the last ended.

    Virtual time: returns at once, and the same seed gives the same list.
    """
    scheduler = BatchScheduler(profile, rng)
    now = 0.0
    # (time it enters the queue, submit time, client index); kept sorted by time.
    arrivals: list[tuple[float, float, int]] = [
        (profile.overhead_time(rng), 0.0, client) for client in range(concurrency)
    ]
    remaining = [requests_per_client - 1] * concurrency
    first_token: dict[int, float] = {}
    results: list[RequestTiming] = []
    while arrivals or scheduler.has_work:
        if not scheduler.has_work and arrivals[0][0] > now:
            now = arrivals[0][0]
        while arrivals and arrivals[0][0] <= now:
            _, submitted, client = arrivals.pop(0)
            scheduler.add(Sequence(prompt_tokens, output_tokens, payload=(submitted, client)))
        step = scheduler.step()
        now += step.duration_s
        for seq in step.admitted:
            first_token[id(seq)] = now
        for seq in step.finished:
            submitted, client = seq.payload
            results.append(RequestTiming(first_token.pop(id(seq)) - submitted, now - submitted, seq.output_tokens))
            if remaining[client] > 0:
                remaining[client] -= 1
                arrivals.append((now + profile.overhead_time(rng), now, client))
        arrivals.sort()
    return results
