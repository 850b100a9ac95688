"""CPU sampling: interpolation over a round's window, saturation flags, a real process sampled."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from loadtest.bench import cpu


def test_cores_between_interpolates_the_cumulative_series():
    # 0.5 core from t=0 to 10, then 1.5 cores to t=20.
    series = [(0.0, 0.0), (10.0, 5.0), (20.0, 20.0)]
    assert cpu.cores_between(series, 0.0, 10.0) == pytest.approx(0.5)
    assert cpu.cores_between(series, 5.0, 15.0) == pytest.approx((12.5 - 2.5) / 10)
    assert cpu.cores_between(series, 10.0, 20.0) == pytest.approx(1.5)


@pytest.mark.parametrize(("begin", "end"), [(-1.0, 5.0), (5.0, 25.0), (5.0, 5.0), (6.0, 5.0)])
def test_cores_between_is_none_where_the_samples_do_not_cover_the_window(begin, end):
    assert cpu.cores_between([(0.0, 0.0), (10.0, 5.0), (20.0, 20.0)], begin, end) is None


def test_cores_between_needs_two_samples():
    assert cpu.cores_between([(0.0, 1.0)], 0.0, 0.0) is None
    assert cpu.cores_between([], 0.0, 1.0) is None


def test_saturation_flags_name_what_bounded_the_round():
    idle = {cpu.LOAD_GENERATOR: 0.2, cpu.UPSTREAM: 0.1, cpu.GATEWAY: 0.3, cpu.MACHINE: 0.8}
    assert cpu.saturation_flags(idle, cpu_count=2) == []
    busy = {cpu.LOAD_GENERATOR: 0.95, cpu.UPSTREAM: 0.9, cpu.GATEWAY: 0.99, cpu.MACHINE: 1.9}
    assert cpu.saturation_flags(busy, cpu_count=2) == [
        cpu.CLIENT_BOUND,
        cpu.UPSTREAM_BOUND,
        cpu.MACHINE_BOUND_FLAG,
        cpu.GATEWAY_BOUND,
    ]
    # The same machine load is not bound on more cores; unsampled parts never flag.
    assert cpu.saturation_flags({cpu.MACHINE: 1.9, cpu.GATEWAY: None}, cpu_count=8) == []
    # A machine busy with other processes than the bench's says so.
    neighbours = {cpu.MACHINE: 1.9, cpu.BENCH: 0.3}
    assert cpu.saturation_flags(neighbours, cpu_count=2) == [cpu.MACHINE_BOUND_FLAG, cpu.OTHER_LOAD]
    assert cpu.saturation_flags({cpu.MACHINE: 1.9, cpu.BENCH: 1.6}, cpu_count=2) == [cpu.MACHINE_BOUND_FLAG]


def test_only_client_upstream_and_machine_bounds_make_a_level_saturated():
    assert not cpu.is_saturated([cpu.GATEWAY_BOUND])  # the gateway's own cost is the tax
    assert cpu.is_saturated([cpu.GATEWAY_BOUND, cpu.CLIENT_BOUND])
    assert cpu.is_saturated([cpu.MACHINE_BOUND_FLAG])


def test_sampler_counts_the_children_of_a_watched_process():
    # Parent and child each burn a fixed amount of CPU time (not wall time: the machine
    # may be busy), then idle until stopped. The tree has used both amounts.
    burn = "import time\nwhile time.process_time() < {s}: pass\ntime.sleep(60)\n"
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {burn.format(s=0.3)!r}])\n" + burn.format(s=0.2)
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        clock = [1000.0]
        sampler = cpu.CpuSampler(
            interval_s=60, children_every_s=0.0, clock=lambda: clock[0], machine=lambda: 1.5 * clock[0]
        )
        sampler.watch(cpu.GATEWAY, proc.pid)
        deadline = time.monotonic() + 60
        while sampler.series(cpu.GATEWAY)[-1][1] < 0.45 and time.monotonic() < deadline:
            time.sleep(0.1)
            clock[0] += 1.0
            sampler.sample()
        assert sampler.series(cpu.GATEWAY)[-1][1] >= 0.45  # 0.2 + 0.3: the child counts
        assert cpu.cores_between(sampler.series(cpu.MACHINE), 1000.0, 1001.0) == pytest.approx(1.5)
        assert sampler.names() == [cpu.GATEWAY]
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait(timeout=10)


def test_sampler_ignores_a_process_that_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = cpu.CpuSampler()
    sampler.watch(cpu.LOAD_GENERATOR, proc.pid)
    assert sampler.series(cpu.LOAD_GENERATOR) == []


def test_sampler_thread_samples_until_stopped():
    with cpu.CpuSampler(interval_s=0.01) as sampler:
        sampler.watch("me", os.getpid())
        deadline = time.monotonic() + 10  # a busy machine may delay the thread
        while len(sampler.series("me")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(sampler.series("me"))
    assert count >= 3
    # Stopped with the block: the thread has ended, so nothing samples any more.
    assert sampler._thread is not None and not sampler._thread.is_alive()
    assert sampler._stop.is_set() and len(sampler.series("me")) == count
    assert len(sampler.series(cpu.MACHINE)) >= count
    times = [t for t, _ in sampler.series("me")]
    assert times == sorted(times)
