"""Load from a Locust master and worker processes (``--load-workers``, ``--expect-workers``).

The bench side of Locust's distributed mode. ``DistributedGenerator`` stands in for
``rounds.LoadGenerator``: it starts the master (``loadtest.bench.locustmaster``) and the
local workers (``loadtest.bench.locustworker``, which ``taxgate bench worker`` also runs on
other machines), sends it the same round messages, and gets back one samples file per
round. The round plan, the statistics and the prompts are the ones of a single process:
the master numbers the users of all workers as one process would, so user ``u`` draws
the same prompts whatever worker runs it.

The saturation check covers every load process: each worker reports its own CPU time
during the round, the master's is sampled here, and a round is client-bound when the
busiest of them used most of its core (``cpu.LOAD_BUSIEST``), not when their sum does.

This module does not import Locust (which patches the standard library with gevent on
import); the two process modules do.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtest.bench import cpu
from loadtest.bench.aggregate import steady_window
from loadtest.bench.loadlayout import LoadLayout
from loadtest.bench.procs import PROJECT_ROOT, child_env
from loadtest.bench.rounds import LoadGenerator
from loadtest.harness import ProcessError, log_tail

LOOPBACK = "127.0.0.1"
# Locust marks a worker missing after 3 heartbeats of 1 s; a round waits a little more.
WORKER_LOST_S = 5.0


class LoadLost(ProcessError):
    """A load process died or stopped answering mid-run: the run ends with what it measured."""


def split_quota(total: int, users: Sequence[int]) -> list[int]:
    """``total`` requests shared by workers in proportion to their users (largest remainder).

    0 stays 0 (a timed round has no quota); a worker with users gets at least one request,
    since a quota of 0 means "no quota" to the locustfile.
    """
    if total <= 0 or not users:
        return [0 for _ in users]
    all_users = sum(users)
    if all_users == 0:
        return [0 for _ in users]
    shares = [total * n / all_users for n in users]
    quotas = [int(share) for share in shares]
    by_remainder = sorted(range(len(users)), key=lambda i: (quotas[i] - shares[i], i))
    for i in by_remainder[: total - sum(quotas)]:
        quotas[i] += 1
    return [max(q, 1) if n else 0 for q, n in zip(quotas, users, strict=True)]


def first_users(users: Sequence[int]) -> list[int]:
    """Each worker's first user number: one numbering 0..N-1 over all workers, in order."""
    firsts, total = [], 0
    for n in users:
        firsts.append(total)
        total += n
    return firsts


def process_cores(processes: Sequence[Mapping], begin: float, end: float) -> list[float | None]:
    """Mean cores of each worker over ``[begin, end]`` from the CPU series it reported."""
    return [cpu.cores_between([tuple(point) for point in p.get("cpu", ())], begin, end) for p in processes]


def load_cores(generator: LoadGenerator, sampler: cpu.CpuSampler, begin: float, end: float) -> dict[str, float | None]:
    """The load parts of a round's CPU: all load processes together, and the busiest one."""
    master = cpu.cores_between(sampler.series(cpu.LOAD_GENERATOR), begin, end)
    workers = process_cores(getattr(generator, "processes", ()), begin, end)
    known = [c for c in (master, *workers) if c is not None]
    if not known:
        return {cpu.LOAD_GENERATOR: None, cpu.LOAD_BUSIEST: None}
    return {cpu.LOAD_GENERATOR: sum(known), cpu.LOAD_BUSIEST: max(known)}


class DistributedGenerator(LoadGenerator):
    """The master process (rounds in, answers out, as the single driver) and local workers."""

    def __init__(self, log_path: Path, layout: LoadLayout, start_timeout_s: float = 120.0) -> None:
        super().__init__(log_path, start_timeout_s)
        self.layout = layout
        self.workers: list[subprocess.Popen] = []
        self.processes: list[dict] = []  # the last round's worker reports (CPU series)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # no with-block exit follows a failed start: nothing may be left running
            raise

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        host, port = self.layout.bind_address()
        argv = [
            sys.executable,
            "-m",
            "loadtest.bench.locustmaster",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(self.layout.workers),
            "--timeout",
            str(self.start_timeout_s),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
                cwd=PROJECT_ROOT,
                start_new_session=True,
                text=True,
                bufsize=1,
            )
        listening = self._read_line(60.0)
        if not listening.startswith("listening "):
            raise self._failure("(master) did not start")
        port = int(listening.split()[1])
        for index in range(self.layout.local):
            self.workers.append(self._start_worker(index, port))
        answer = self._read_line(self.start_timeout_s + 10.0)
        if answer != "ready":
            raise self._failure(f"(master) {answer or 'gave up waiting for its workers'}")

    def _start_worker(self, index: int, port: int) -> subprocess.Popen:
        log_path = self.worker_log(index)
        with log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "loadtest.bench.locustworker", "--master", f"{LOOPBACK}:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=PROJECT_ROOT,
                start_new_session=True,
            )

    def worker_log(self, index: int) -> Path:
        return self.log_path.with_name(f"{self.log_path.stem}-worker-{index + 1}.log")

    def watch(self, sampler: cpu.CpuSampler) -> None:
        """The master and the local workers in the sampler (this machine's CPU accounting)."""
        sampler.watch(cpu.LOAD_GENERATOR, self.pid)
        for index, worker in enumerate(self.workers):
            sampler.watch(f"{cpu.LOAD_GENERATOR}:worker {index + 1}", worker.pid)

    def run(self, message: dict, timeout_s: float) -> dict:
        dead = [i + 1 for i, w in enumerate(self.workers) if w.poll() is not None]
        if dead:
            raise LoadLost(
                f"local Locust worker(s) {', '.join(map(str, dead))} exited; see {self.worker_log(dead[0] - 1)}"
            )
        try:
            answer = super().run(message, timeout_s)
        except ProcessError as exc:
            if self.proc is not None and self.proc.poll() is None:
                raise
            raise LoadLost(str(exc)) from None
        self.processes = answer.get("processes", [])
        return answer

    def _failure(self, what: str) -> ProcessError:
        lost = "lost a worker" in what
        text = (
            f"the load generator (Locust) {what}\n  log: {self.log_path}\n"
            f"--- last lines of its log ---\n{log_tail(self.log_path)}"
        )
        return LoadLost(text) if lost else ProcessError(text)

    def stop(self) -> None:
        super().stop()  # the master tells its workers to quit
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:  # it never joined, or the master died first
                worker.kill()
                worker.wait()


def load_generator(layout: LoadLayout, log_path: Path, start_timeout_s: float) -> LoadGenerator:
    """One Locust process (the default), or a master and workers."""
    if layout.distributed:
        return DistributedGenerator(log_path, layout, start_timeout_s)
    return LoadGenerator(log_path)


def watch_load(generator: LoadGenerator, sampler: cpu.CpuSampler) -> None:
    if isinstance(generator, DistributedGenerator):
        generator.watch(sampler)
    else:
        sampler.watch(cpu.LOAD_GENERATOR, generator.pid)


def round_load_cores(generator: LoadGenerator, sampler: cpu.CpuSampler, samples: Sequence) -> dict[str, float | None]:
    """The load parts of a round: all load processes, the busiest (one process: itself)."""
    begin, end, _ = steady_window(samples)
    return load_cores(generator, sampler, begin, end)


def lost_rounds(
    exc: LoadLost, plan: Sequence[tuple[int, object, str]], samples: Mapping[tuple[str, int], Sequence]
) -> list[str]:
    """What a run that lost its load generator did not measure, for the report."""
    planned: dict[tuple[str, int], int] = {}
    for _repeat, level, name in plan:
        key = (name, level.users)
        planned[key] = planned.get(key, 0) + 1
    short = [
        f"{name} at {users} users: {len(samples.get((name, users), ()))} of {n} rounds"
        for (name, users), n in planned.items()
        if len(samples.get((name, users), ())) < n
    ]
    first_line = str(exc).strip().splitlines()[0]
    return [
        f"{first_line}; the rounds stopped there and the report has what was measured "
        f"before (the round in progress is dropped): {'; '.join(short)}"
    ]
