from __future__ import annotations

import asyncio
import threading
from collections import deque

import pytest
from prometheus_client import CollectorRegistry

from monitors.base import Finding
from monitors.batcher import BatchPolicy, MicroBatcher, MonitorOverloaded, _Pending
from monitors.config import BatchSpec
from monitors.metrics import MonitorMetrics
from tests.waiting import started, wait_until


class Recorder:
    """A monitor function that records its batches and can be held inside a call."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, texts: list[str]) -> list[Finding]:
        self.batches.append(list(texts))
        self.entered.set()
        assert self.release.wait(5), "test never released the batch"
        return [Finding(score=len(t) / 100, labels={"len": float(len(t))}) for t in texts]


@pytest.fixture
async def make_batcher(metrics: MonitorMetrics):
    batchers: list[MicroBatcher] = []

    async def make(fn, **spec) -> MicroBatcher:
        batcher = MicroBatcher(fn, BatchSpec(**spec), name="m", metrics=metrics)
        await batcher.start()
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:
        await batcher.close()


# -- policy (pure) -----------------------------------------------------------


def pending(loop: asyncio.AbstractEventLoop, text: str = "t") -> _Pending:
    return _Pending(text, 0.0, loop.create_future())


def test_policy_cuts_a_full_batch_at_once_and_otherwise_waits_for_the_oldest():
    policy = BatchPolicy(BatchSpec(max_batch=4, max_wait_ms=10, max_queue=100))
    assert policy.delay(queued=4, oldest_enqueued_at=1.0, now=1.0) == 0.0
    assert policy.delay(queued=1, oldest_enqueued_at=1.0, now=1.004) == pytest.approx(0.006)
    assert policy.delay(queued=1, oldest_enqueued_at=1.0, now=2.0) == 0.0


def test_policy_takes_at_most_max_batch_and_skips_cancelled():
    loop = asyncio.new_event_loop()
    try:
        policy = BatchPolicy(BatchSpec(max_batch=3))
        items = [pending(loop, str(i)) for i in range(6)]
        items[1].future.cancel()
        queue = deque(items)
        assert [p.text for p in policy.take(queue)] == ["0", "2", "3"]
        assert [p.text for p in queue] == ["4", "5"]
    finally:
        loop.close()


def test_policy_admission_and_retry_after():
    policy = BatchPolicy(BatchSpec(max_batch=10, max_queue=20))
    assert policy.admits(queued=15, incoming=5)
    assert not policy.admits(queued=15, incoming=6)
    assert policy.admits(queued=0, incoming=500), "an oversized submit must still run alone"
    assert policy.retry_after(queued=20, batch_seconds=0.5) == pytest.approx(1.0)
    assert policy.retry_after(queued=20, batch_seconds=0.0) > 0
    assert policy.retry_after(queued=10**9, batch_seconds=1.0) <= 30


# -- plumbing ----------------------------------------------------------------


async def test_concurrent_submits_share_one_call(make_batcher, prom: CollectorRegistry):
    fn = Recorder()
    batcher = await make_batcher(fn, max_batch=32, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit([f"text {i}", "x" * i]) for i in range(5)))
    assert len(fn.batches) == 1
    assert sorted(fn.batches[0]) == sorted(t for i in range(5) for t in (f"text {i}", "x" * i))
    # Each caller gets its own findings back, in its own order.
    for i, findings in enumerate(results):
        assert [f.labels["len"] for f in findings] == [len(f"text {i}"), float(i)]
    assert prom.get_sample_value("taxgate_monitor_batch_size_count", {"monitor": "m"}) == 1
    assert prom.get_sample_value("taxgate_monitor_batch_size_sum", {"monitor": "m"}) == 10
    assert prom.get_sample_value("taxgate_monitor_queue_wait_seconds_count", {"monitor": "m"}) == 10


async def test_batches_never_exceed_max_batch(make_batcher):
    fn = Recorder()
    batcher = await make_batcher(fn, max_batch=4, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit([str(i)]) for i in range(10)))
    assert [len(b) for b in fn.batches] == [4, 4, 2]
    assert [r[0].labels["len"] for r in results] == [1.0] * 10


async def test_a_lone_text_waits_at_most_max_wait(make_batcher):
    fn = Recorder()
    batcher = await make_batcher(fn, max_batch=32, max_wait_ms=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.submit(["alone"])
    assert loop.time() - started < 0.5
    assert fn.batches == [["alone"]]


async def test_full_queue_raises_overloaded(make_batcher):
    fn = Recorder(hold=True)
    batcher = await make_batcher(fn, max_batch=8, max_wait_ms=0, max_queue=3)
    running = asyncio.create_task(batcher.submit(["first"]))
    await wait_until(fn.entered.is_set)  # "first" is inside the model, queue empty
    queued = asyncio.create_task(batcher.submit(["a", "b", "c"]))
    await wait_until(lambda: batcher.queued == 3)
    with pytest.raises(MonitorOverloaded) as info:
        await batcher.submit(["one too many"])
    assert info.value.monitor_id == "m"
    assert info.value.retry_after_s > 0
    fn.release.set()
    assert len(await running) == 1
    assert len(await queued) == 3


async def test_a_cancelled_submit_does_not_break_the_batch_for_others(make_batcher):
    fn = Recorder(hold=True)
    batcher = await make_batcher(fn, max_batch=8, max_wait_ms=0)
    first = asyncio.create_task(batcher.submit(["in flight"]))
    await wait_until(fn.entered.is_set)
    doomed = asyncio.create_task(batcher.submit(["cancel me"]))
    survivor = asyncio.create_task(batcher.submit(["keep me"]))
    await wait_until(lambda: batcher.queued == 2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(doomed, 0.01)  # the pipeline's timeout does exactly this
    fn.release.set()
    assert [f.labels["len"] for f in await survivor] == [7.0]
    assert len(await first) == 1
    assert fn.batches == [["in flight"], ["keep me"]], "the cancelled text is never scored"


async def test_cancelling_a_text_already_in_the_model_spares_its_batch_mates(make_batcher):
    fn = Recorder(hold=True)
    batcher = await make_batcher(fn, max_batch=8, max_wait_ms=30)
    doomed = asyncio.create_task(batcher.submit(["a"]))
    mate = asyncio.create_task(batcher.submit(["bb"]))
    await wait_until(fn.entered.is_set)
    doomed.cancel()
    fn.release.set()
    assert [f.labels["len"] for f in await mate] == [2.0]
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await batcher.submit(["still works"])


async def test_a_failing_model_fails_its_batch_and_the_batcher_goes_on(make_batcher):
    calls = []

    def flaky(texts: list[str]) -> list[Finding]:
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return [Finding(score=0.0) for _ in texts]

    batcher = await make_batcher(flaky, max_batch=8, max_wait_ms=30)
    outcomes = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await batcher.submit(["c"]) == [Finding(score=0.0)]


async def test_wrong_number_of_findings_is_an_error(make_batcher):
    batcher = await make_batcher(lambda texts: [], max_wait_ms=0)
    with pytest.raises(ValueError, match="0 findings for 1 texts"):
        await batcher.submit(["a"])


async def test_scoring_runs_off_the_event_loop(make_batcher):
    seen = []

    def fn(texts: list[str]) -> list[Finding]:
        seen.append(threading.current_thread().name)
        return [Finding(score=0.0) for _ in texts]

    batcher = await make_batcher(fn, max_wait_ms=0)
    await batcher.submit(["a"])
    assert seen and seen[0].startswith("monitor-m")


async def test_close_fails_queued_texts_and_refuses_new_ones(metrics: MonitorMetrics):
    fn = Recorder(hold=True)
    batcher = MicroBatcher(fn, BatchSpec(max_wait_ms=0), name="m", metrics=metrics)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(["in flight"]))
    await wait_until(fn.entered.is_set)
    queued = asyncio.create_task(batcher.submit(["queued"]))
    await wait_until(lambda: batcher.queued == 1)
    closing = await started(batcher.close())  # closed while a batch is still running
    fn.release.set()
    await closing
    for task in (first, queued):
        with pytest.raises(RuntimeError, match="shut down"):
            await task
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.submit(["late"])
