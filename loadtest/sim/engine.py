"""The simulated engine: runs the batching scheduler in real time on the event loop.

One task steps the scheduler and sleeps for each step's duration; requests get
their tokens through a per-request ``TokenQueue``. Sleeping to a running target
time (not for a fixed delay after the work) keeps the step rate right even when
handing out tokens takes a while.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.sim.output import Output
from loadtest.sim.stats import EngineStats
from loadtest.sim.timing import BatchScheduler, LatencyProfile, Sequence, StepResult


class TokenQueue:
    """Tokens on their way from the engine to one request's handler.

    Like vLLM's per-request output collector, tokens that pile up while the
    reader is busy come out together in one ``get()``, so a slow reader falls
    behind by fewer, larger chunks instead of an ever longer queue.
    """

    __slots__ = ("_tokens", "_waiter", "_wake_each_token", "finish_reason")

    def __init__(self, wake_each_token: bool = True) -> None:
        self._tokens: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        # A non-streamed request only needs waking at the end.
        self._wake_each_token = wake_each_token
        self.finish_reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.finish_reason is not None

    def put(self, token: str) -> None:
        self._tokens.append(token)
        if self._wake_each_token:
            self._wake()

    def close(self, finish_reason: str) -> None:
        if self.finish_reason is None:
            self.finish_reason = finish_reason
            self._wake()

    async def get(self) -> list[str]:
        """All tokens so far (at least one), or ``[]`` once closed and drained."""
        while not self._tokens and self.finish_reason is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        tokens = self._tokens
        self._tokens = []
        return tokens

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclass(eq=False)
class Generation:
    """One request inside the engine: its scheduler entry, output and timestamps."""

    seq: Sequence
    output: Output
    queue: TokenQueue
    arrival: float
    queued_at: float = 0.0
    first_token_at: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return self.seq.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.seq.emitted


@dataclass
class SimEngine:
    """Steps a ``BatchScheduler`` in real time. Run ``run()`` as one task."""

    profile: LatencyProfile
    rng: random.Random
    stats: EngineStats = field(default_factory=EngineStats)
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self._scheduler = BatchScheduler(self.profile, self.rng)
        self._has_work = asyncio.Event()
        self._last_delivery = self.clock()
        self._stopped = False

    @property
    def num_running(self) -> int:
        return self._scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self._scheduler.num_waiting

    def submit(self, prompt_tokens: int, output: Output, *, stream: bool = True) -> Generation:
        """Start generating; tokens arrive on the returned generation's ``queue``."""
        seq = Sequence(prompt_tokens, len(output.tokens))
        gen = Generation(seq, output, TokenQueue(wake_each_token=stream), arrival=self.clock())
        seq.payload = gen
        overhead = self.profile.overhead_time(self.rng)
        if overhead > 0:
            # The API-server part runs beside the engine, so it is a timer, not a step cost.
            asyncio.get_running_loop().call_later(overhead, self._enqueue, gen)
        else:
            self._enqueue(gen)
        return gen

    def abort(self, gen: Generation) -> bool:
        """Stop a generation (client gone): frees its slot. False if it had already ended."""
        if not self._scheduler.abort(gen.seq):
            return False
        self.stats.finished["abort"] += 1
        gen.queue.close("abort")
        return True

    def _enqueue(self, gen: Generation) -> None:
        if self._stopped:
            self.abort(gen)
            return
        gen.queued_at = self.clock()
        self._scheduler.add(gen.seq)
        self._has_work.set()

    async def run(self) -> None:
        """Step until cancelled. However it ends, no request is left waiting forever."""
        try:
            await self._step_forever()
        finally:
            self._stopped = True
            for seq in self._scheduler.live():
                self.abort(seq.payload)

    async def _step_forever(self) -> None:
        target = self.clock()
        while True:
            if not self._scheduler.has_work:
                self._has_work.clear()
                await self._has_work.wait()
                target = self.clock()
            started = self.clock()
            step = self._scheduler.step()
            target += step.duration_s
            delay = target - self.clock()
            if delay < 0:
                # Behind (CPU-bound): deliver now, and do not burst later to catch up.
                target = self.clock()
                delay = 0.0
            # Even at zero delay this yields, so handlers can send what they received.
            await asyncio.sleep(delay)
            self._deliver(step, started)

    def _deliver(self, step: StepResult, started: float) -> None:
        now = self.clock()
        previous, self._last_delivery = self._last_delivery, now
        stats = self.stats
        decoded = 0
        for seq in step.emitted:
            if seq.state == "aborted":
                continue  # aborted while the step ran
            gen: Generation = seq.payload
            gen.queue.put(gen.output.tokens[seq.emitted - 1])
            decoded += 1
        prefill = 0
        first_tokens = 0
        for seq in step.admitted:
            if seq.state == "aborted":
                continue
            gen = seq.payload
            gen.first_token_at = now
            first_tokens += 1
            prefill += seq.prompt_tokens
            stats.ttft.observe(now - gen.arrival)
            stats.queue_time.observe(started - gen.queued_at)
            stats.request_prompt_tokens.observe(seq.prompt_tokens)
        # Every sequence that was already running last step waited exactly this long.
        stats.itl.observe(now - previous, decoded - first_tokens)
        stats.prompt_tokens += prefill
        stats.generation_tokens += decoded
        stats.iteration_tokens.observe(prefill + decoded)
        for seq in step.finished:
            gen = seq.payload
            reason = gen.output.finish_reason
            gen.queue.close(reason)
            stats.finished[reason] += 1
            stats.e2e.observe(now - gen.arrival)
            stats.request_generation_tokens.observe(seq.emitted)
            if seq.emitted > 1:
                stats.tpot.observe((now - gen.first_token_at) / (seq.emitted - 1))
