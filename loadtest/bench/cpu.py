"""CPU of the bench's own processes during each round: the cost column and the saturation flags.

A ``CpuSampler`` thread reads, every ``interval_s``, the cumulative CPU seconds
(user + system) of each watched process tree (the load generator, the upstream
simulator, each gateway and any worker processes it forked) and of the whole
machine. The arithmetic is pure: ``cores_between`` interpolates a cumulative
series at a round's measured window, ``saturation_flags`` reads the result.

Why sample instead of reading once per round: a Locust process spends its first
second importing, and a gateway serves the warm-up and other rounds too; only
the CPU inside the round's steady window is that round's.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psutil

MACHINE = "machine"
LOAD_GENERATOR = "load generator"
# With Locust workers (``distributed``): the busiest of the master and worker processes,
# each one core; LOAD_GENERATOR is then their sum.
LOAD_BUSIEST = "busiest load process"
UPSTREAM = "upstream"
GATEWAY = "gateway"
BENCH = "bench processes"  # all of the above together, every gateway included

# One process is one core (Locust, the simulator and one gateway worker are single-threaded
# event loops); past ~85% of it, or of the machine, the queueing is the CPU's, not the code's.
PROCESS_BOUND = 0.85
MACHINE_BOUND = 0.85
# Processes that are not the bench's (other tenants) using this share of the machine.
OTHER_LOAD_SHARE = 0.25

CLIENT_BOUND = "client-bound"
UPSTREAM_BOUND = "upstream-bound"
MACHINE_BOUND_FLAG = "machine-bound"
GATEWAY_BOUND = "gateway-bound"
OTHER_LOAD = "other-load"
# Flags that make a level's tax a property of this machine rather than of the gateway.
SATURATION_FLAGS = (CLIENT_BOUND, UPSTREAM_BOUND, MACHINE_BOUND_FLAG)

Series = list[tuple[float, float]]  # (epoch seconds, cumulative CPU seconds), time-ordered


def cores_between(series: Sequence[tuple[float, float]], begin: float, end: float) -> float | None:
    """Mean cores used over ``[begin, end]``; None unless samples lie on both sides of it.

    Cumulative CPU is interpolated linearly between the samples around each end.
    """
    if end <= begin or len(series) < 2 or series[0][0] > begin or series[-1][0] < end:
        return None
    return (_at(series, end) - _at(series, begin)) / (end - begin)


def _at(series: Sequence[tuple[float, float]], t: float) -> float:
    i = bisect.bisect_left(series, t, key=lambda point: point[0])
    if i < len(series) and series[i][0] == t:
        return series[i][1]
    (t0, c0), (t1, c1) = series[i - 1], series[i]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def saturation_flags(cores: Mapping[str, float | None], cpu_count: int) -> list[str]:
    """What bounded a round, from the mean cores each part used during it."""
    flags = []

    def over(role: str, limit: float) -> bool:
        value = cores.get(role)
        return value is not None and value >= limit

    if over(LOAD_BUSIEST if cores.get(LOAD_BUSIEST) is not None else LOAD_GENERATOR, PROCESS_BOUND):
        flags.append(CLIENT_BOUND)
    if over(UPSTREAM, PROCESS_BOUND):
        flags.append(UPSTREAM_BOUND)
    if over(MACHINE, MACHINE_BOUND * cpu_count):
        flags.append(MACHINE_BOUND_FLAG)
    if over(GATEWAY, PROCESS_BOUND):
        flags.append(GATEWAY_BOUND)
    machine, ours = cores.get(MACHINE), cores.get(BENCH)
    if machine is not None and ours is not None and machine - ours >= OTHER_LOAD_SHARE * cpu_count:
        flags.append(OTHER_LOAD)  # a busy neighbour, not this bench: rerun on a quiet machine
    return flags


def is_saturated(flags: Sequence[str]) -> bool:
    return any(flag in SATURATION_FLAGS for flag in flags)


def tree_cpu_seconds(proc: psutil.Process, children: Sequence[psutil.Process]) -> float | None:
    """User + system CPU seconds of a process and its known descendants; None once it is gone."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    total = times.user + times.system
    for child in children:
        try:
            child_times = child.cpu_times()
        except psutil.Error:
            continue  # a worker that exited; its time is lost, not double counted
        total += child_times.user + child_times.system
    return total


def machine_busy_seconds() -> float:
    """Core-seconds the machine spent not idle since boot (steal counts: cores we did not get)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


@dataclass
class _Watched:
    proc: psutil.Process
    children: list[psutil.Process] = field(default_factory=list)
    series: Series = field(default_factory=list)


class CpuSampler:
    """Samples watched process trees and the machine in a daemon thread.

    ``watch(name, pid)`` may be called while it runs (a new Locust per round);
    ``series(name)`` returns what was sampled so far. Descendants are looked up
    every ``children_every_s`` only: listing them scans all of /proc.
    """

    def __init__(
        self,
        interval_s: float = 0.2,
        children_every_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        machine: Callable[[], float] = machine_busy_seconds,
    ) -> None:
        self.interval_s = interval_s
        self.children_every_s = children_every_s
        self._clock = clock
        self._machine = machine
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._machine_series: Series = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._children_at = 0.0

    def watch(self, name: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return  # already gone: nothing to measure
        with self._lock:
            self._watched[name] = _Watched(proc, self._children_of(proc))
        self.sample()  # a first point at the start, so short rounds are covered

    def names(self) -> list[str]:
        with self._lock:
            return list(self._watched)

    def series(self, name: str) -> Series:
        with self._lock:
            if name == MACHINE:
                return list(self._machine_series)
            watched = self._watched.get(name)
            return list(watched.series) if watched else []

    def sample(self) -> None:
        now = self._clock()
        with self._lock:
            refresh = now - self._children_at >= self.children_every_s
            if refresh:
                self._children_at = now
            for watched in self._watched.values():
                if refresh:
                    watched.children = self._children_of(watched.proc)
                cpu = tree_cpu_seconds(watched.proc, watched.children)
                if cpu is not None:
                    watched.series.append((now, cpu))
            self._machine_series.append((now, self._machine()))

    @staticmethod
    def _children_of(proc: psutil.Process) -> list[psutil.Process]:
        try:
            return proc.children(recursive=True)
        except psutil.Error:
            return []

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
