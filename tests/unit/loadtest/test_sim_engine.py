"""The real-time engine loop and the per-request token queues."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from loadtest.sim.engine import SimEngine, TokenQueue
from loadtest.sim.output import Output
from loadtest.sim.timing import LatencyProfile
from tests.waiting import wait_until

FAST = LatencyProfile("fast", prefill_s_per_token=0.0, step_base_s=0.001, step_per_seq_s=0.0, max_num_seqs=2)


@pytest.fixture
async def engine() -> AsyncIterator[SimEngine]:
    engine = SimEngine(FAST, random.Random(0))
    task = asyncio.create_task(engine.run())
    yield engine
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def drain(queue: TokenQueue) -> list[str]:
    tokens: list[str] = []
    while not queue.closed:
        tokens.extend(await queue.get())
    return tokens


def output(n: int, natural_stop: bool = False) -> Output:
    return Output([f" t{i}" for i in range(n)], natural_stop)


async def test_tokens_arrive_in_order_then_the_finish_reason(engine):
    gen = engine.submit(7, output(5, natural_stop=True))
    assert await drain(gen.queue) == [" t0", " t1", " t2", " t3", " t4"]
    assert gen.queue.finish_reason == "stop"
    stats = engine.stats
    assert (stats.prompt_tokens, stats.generation_tokens, stats.finished["stop"]) == (7, 5, 1)
    assert stats.ttft.count == 1 and stats.e2e.count == 1 and stats.itl.count == 4


async def test_requests_beyond_max_num_seqs_wait(engine):
    gens = [engine.submit(1, output(30)) for _ in range(3)]
    await wait_until(lambda: engine.num_running == 2, what="two requests admitted")
    assert (engine.num_running, engine.num_waiting) == (2, 1)
    await asyncio.gather(*(drain(gen.queue) for gen in gens))
    assert gens[2].first_token_at >= max(gens[0].first_token_at, gens[1].first_token_at)
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_abort_frees_the_slot_and_is_counted(engine):
    first, second, third = (engine.submit(1, output(10_000)) for _ in range(3))
    await first.queue.get()
    assert engine.abort(first) is True
    assert first.queue.finish_reason == "abort"
    await third.queue.get()  # it got the freed slot
    assert engine.abort(second) and engine.abort(third)
    assert engine.abort(first) is False
    assert engine.stats.aborted == 3
    # An abort frees its slot at once, not at the next step.
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_request_overhead_delays_entry_and_abort_during_it_wins():
    slow_api = LatencyProfile(
        "slow-api",
        prefill_s_per_token=0.0,
        step_base_s=0.001,
        step_per_seq_s=0.0,
        max_num_seqs=4,
        request_overhead_s=0.05,
    )
    engine = SimEngine(slow_api, random.Random(0))
    task = asyncio.create_task(engine.run())
    try:
        gen = engine.submit(1, output(3))
        assert engine.num_waiting == 0  # still in the API server
        engine.abort(gen)
        # The overhead timer still fires: it must drop the aborted request, not queue it.
        await wait_until(lambda: gen.queued_at > 0, what="the overhead timer")
        assert (engine.num_running, engine.num_waiting, gen.completion_tokens) == (0, 0, 0)
        done = engine.submit(1, output(3))
        await drain(done.queue)
        assert done.first_token_at - done.arrival >= 0.05
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_slow_reader_gets_tokens_merged():
    queue = TokenQueue()
    for token in ("a", "b", "c"):
        queue.put(token)
    queue.close("length")
    assert await queue.get() == ["a", "b", "c"]
    assert await queue.get() == []


async def test_non_streamed_queue_wakes_only_when_closed():
    queue = TokenQueue(wake_each_token=False)
    reader = asyncio.create_task(queue.get())
    await wait_until(lambda: queue._waiter is not None, what="the reader waiting")
    queue.put("a")
    assert not queue._waiter.done()  # a token does not wake a non-streamed reader
    queue.close("stop")
    assert await reader == ["a"]


async def test_streamed_queue_wakes_on_each_token():
    queue = TokenQueue()
    reader = asyncio.create_task(queue.get())
    await wait_until(lambda: queue._waiter is not None, what="the reader waiting")
    queue.put("a")
    assert queue._waiter is None or queue._waiter.done()
    assert await reader == ["a"]
    assert not queue.closed


async def test_stopping_the_engine_ends_every_request():
    engine = SimEngine(FAST, random.Random(0))
    task = asyncio.create_task(engine.run())
    gens = [engine.submit(1, output(10_000)) for _ in range(3)]  # two run, one waits
    await gens[0].queue.get()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [gen.queue.finish_reason for gen in gens] == ["abort"] * 3
    late = engine.submit(1, output(3))
    assert late.queue.finish_reason == "abort"
