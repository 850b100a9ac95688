"""The call batcher: texts of concurrent submits share calls, within every bound."""

from __future__ import annotations

import asyncio

import pytest

from monitors.base import MonitorOverloaded
from monitors.callbatcher import CallBatcher
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics
from tests.waiting import started, wait_until


class Engine:
    """An async scoring function that records its calls and can hold them open."""

    def __init__(self, *, hold: bool = False, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = fail
        if not hold:
            self.release.set()

    async def __call__(self, texts: list[str]) -> list[int]:
        self.calls.append(list(texts))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [len(text) for text in texts]


@pytest.fixture
async def batchers():
    made: list[CallBatcher] = []
    yield made
    for batcher in made:
        await batcher.close()


def make(batchers, engine, metrics=None, max_in_flight=1, **spec) -> CallBatcher:
    batcher = CallBatcher(engine, BatchSpec(**spec), name="guard", max_in_flight=max_in_flight)
    if metrics is not None:
        batcher.observe(metrics)
    batchers.append(batcher)
    return batcher


async def test_concurrent_submits_share_one_call_and_get_their_own_results(batchers, metrics, prom):
    engine = Engine()
    batcher = make(batchers, engine, metrics, max_batch=32, max_wait_ms=50)
    results = await asyncio.gather(batcher.submit(["a", "bb"]), batcher.submit(["ccc"]), batcher.submit(["dddd"]))
    assert results == [[1, 2], [3], [4]]
    assert engine.calls == [["a", "bb", "ccc", "dddd"]]
    assert prom.get_sample_value("taxgate_monitor_batch_size_count", {"monitor": "guard"}) == 1
    assert prom.get_sample_value("taxgate_monitor_batch_size_sum", {"monitor": "guard"}) == 4
    assert prom.get_sample_value("taxgate_monitor_queue_wait_seconds_count", {"monitor": "guard"}) == 4
    assert prom.get_sample_value("taxgate_monitor_call_seconds_count", {"monitor": "guard"}) == 1


async def test_a_full_batch_goes_at_once_and_calls_never_exceed_max_batch(batchers):
    engine = Engine()
    batcher = make(batchers, engine, max_batch=3, max_wait_ms=10_000)
    # A wait of 10 s would fail the test's timeout: full batches must not wait for it.
    results = await asyncio.wait_for(batcher.submit([str(i) * (i + 1) for i in range(6)]), 5)
    assert results == [1, 2, 3, 4, 5, 6]
    assert [len(call) for call in engine.calls] == [3, 3]


async def test_texts_accumulate_while_every_slot_is_busy(batchers):
    engine = Engine(hold=True)
    batcher = make(batchers, engine, max_in_flight=1, max_batch=32, max_wait_ms=0)
    first = await started(batcher.submit(["first"]))
    await wait_until(lambda: len(engine.calls) == 1, what="the first call")
    later = [await started(batcher.submit([f"t{i}"])) for i in range(5)]
    await wait_until(lambda: batcher.queued == 5, what="five texts queued behind the call")
    assert len(engine.calls) == 1  # no slot: nothing else went out
    engine.release.set()
    await asyncio.gather(first, *later)
    assert engine.calls == [["first"], ["t0", "t1", "t2", "t3", "t4"]]


async def test_a_full_queue_refuses_with_a_retry_after(batchers):
    engine = Engine(hold=True)
    batcher = make(batchers, engine, max_in_flight=1, max_batch=1, max_wait_ms=0, max_queue=2)
    await started(batcher.submit(["out"]))
    await wait_until(lambda: len(engine.calls) == 1, what="the first call")
    await started(batcher.submit(["q1", "q2"]))
    with pytest.raises(MonitorOverloaded) as refused:
        await batcher.submit(["q3"])
    assert refused.value.retry_after_s > 0
    engine.release.set()


async def test_a_failed_call_fails_every_text_in_it_and_the_next_call_runs(batchers):
    engine = Engine(fail=RuntimeError("engine said no"))
    batcher = make(batchers, engine, max_batch=8, max_wait_ms=20)
    outcomes = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "engine said no" in str(o) for o in outcomes)
    engine.fail = None
    assert await batcher.submit(["ccc"]) == [3]


async def test_a_short_answer_is_an_error_not_a_partial_verdict(batchers):
    async def short(texts: list[str]) -> list[int]:
        return [1] * (len(texts) - 1)

    batcher = make(batchers, short, max_batch=8, max_wait_ms=0)
    with pytest.raises(ValueError, match="1 results for 2 texts"):
        await batcher.submit(["a", "b"])


async def test_a_submit_that_gives_up_leaves_the_others_their_results(batchers):
    engine = Engine(hold=True)
    batcher = make(batchers, engine, max_in_flight=1, max_batch=8, max_wait_ms=0)
    await started(batcher.submit(["busy"]))
    await wait_until(lambda: len(engine.calls) == 1, what="the first call")
    leaving = await started(batcher.submit(["gone"]))
    staying = await started(batcher.submit(["kept"]))
    leaving.cancel()
    engine.release.set()
    assert await staying == [4]
    assert ["kept"] in engine.calls and not any("gone" in call for call in engine.calls)


async def test_close_fails_waiting_texts_and_refuses_new_ones(batchers):
    engine = Engine(hold=True)
    batcher = make(batchers, engine, max_in_flight=1, max_batch=8, max_wait_ms=0)
    out = await started(batcher.submit(["out"]))
    await wait_until(lambda: len(engine.calls) == 1, what="the first call")
    queued = await started(batcher.submit(["queued"]))
    await batcher.close()
    for task in (out, queued):
        with pytest.raises(RuntimeError, match="shut down"):
            await task
    with pytest.raises(RuntimeError, match="shut down"):
        await batcher.submit(["late"])


def test_metrics_are_optional(metrics: MonitorMetrics):
    CallBatcher(Engine(), BatchSpec(), name="x").observe(metrics)
    with pytest.raises(ValueError):
        CallBatcher(Engine(), BatchSpec(), name="x", max_in_flight=0)


# -- when a call goes (pure) -----------------------------------------------------


def test_policy_sends_at_once_to_an_idle_engine_and_batches_under_load():
    from monitors.callbatcher import CallPolicy

    policy = CallPolicy(BatchSpec(max_batch=8, max_wait_ms=4), max_in_flight=2)
    assert policy.delay(queued=0, waited_s=0.0, in_flight=0) is None  # nothing to send
    assert policy.delay(queued=1, waited_s=0.0, in_flight=0) == 0.0  # idle: no one to wait for
    assert policy.delay(queued=1, waited_s=0.001, in_flight=1) == pytest.approx(0.003)  # wait for company
    assert policy.delay(queued=1, waited_s=0.009, in_flight=1) == 0.0
    assert policy.delay(queued=8, waited_s=0.0, in_flight=1) == 0.0  # full
    assert policy.delay(queued=50, waited_s=1.0, in_flight=2) is None  # every slot taken


async def test_texts_wait_for_company_while_a_call_is_out(batchers):
    engine = Engine(hold=True)
    batcher = make(batchers, engine, max_in_flight=2, max_batch=32, max_wait_ms=10_000)
    await started(batcher.submit(["first"]))
    await wait_until(lambda: len(engine.calls) == 1, what="the first call")
    waiting = [await started(batcher.submit([f"t{i}"])) for i in range(3)]
    # A slot is free, but the texts wait (up to max_wait) for more while a call is out...
    assert len(engine.calls) == 1 and batcher.queued == 3
    # ...until the call returns and the engine is idle again: then they go at once, together.
    engine.release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert engine.calls[1] == ["t0", "t1", "t2"]
