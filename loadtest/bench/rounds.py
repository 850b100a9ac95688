"""One measured round: a headless Locust run of one scenario at one concurrency.

Each round is a fresh ``locust`` process (the real tool, the same locustfile users
run by hand), writing every request as a JSON line that the bench reads back.
All users are spawned at once and each waits a random part of ``stagger_s`` before
its first request, so they do not run in lockstep. A round ends after ``requests``
requests were answered (the locustfile's ``--max-requests``) or, as a ceiling, when
``--run-time`` ends; then Locust starts no new request and waits for the in-flight
ones (``--stop-timeout``), so no request is cut off and the slowest ones are not
silently dropped from the tail.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest.bench.procs import PROJECT_ROOT, ProcessError, child_env, log_tail
from loadtest.bench.samples import Sample, read_samples

LOCUSTFILE = PROJECT_ROOT / "loadtest" / "locustfile.py"


@dataclass(frozen=True)
class Workload:
    """What every round sends: the same for all scenarios so their latencies compare."""

    model: str
    max_tokens: int
    labels: str = "benign"
    dataset: Path | None = None
    seed: int = 0
    ignore_eos: bool = True
    stop_timeout_s: int = 120


@dataclass(frozen=True)
class RoundSpec:
    scenario: str
    concurrency: int
    repeat: int
    url: str
    duration_s: int  # a ceiling when ``requests`` is set
    requests: int = 0  # 0: run for duration_s
    stagger_s: float = 0.0

    @property
    def key(self) -> str:
        return f"r{self.repeat}-c{self.concurrency}-{self.scenario}"


def locust_command(spec: RoundSpec, workload: Workload, samples_path: Path) -> list[str]:
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", spec.url,
        "--users", str(spec.concurrency),
        # Spawn everyone at once: a slow ramp would measure a lower concurrency.
        "--spawn-rate", str(max(spec.concurrency, 1) * 100),
        "--run-time", f"{spec.duration_s}s",
        "--stop-timeout", str(workload.stop_timeout_s),
        "--exit-code-on-error", "0",  # failed requests are data; a crash is the error
        "--model", workload.model,
        "--max-tokens", str(workload.max_tokens),
        "--labels", workload.labels,
        # The same prompt order in every scenario's round r: paired comparisons.
        "--prompt-seed", str(workload.seed * 1000 + spec.repeat),
        "--itl-events", "none",  # the JSONL has every gap; spare the load generator
        "--samples-out", str(samples_path),
        "--stagger-s", f"{spec.stagger_s:g}",
        "--max-requests", str(spec.requests),
    ]
    if workload.dataset is not None:
        argv += ["--dataset", str(workload.dataset)]
    if not workload.ignore_eos:
        argv.append("--no-ignore-eos")
    return argv


def run_round(spec: RoundSpec, workload: Workload, work_dir: Path,
              on_start: Callable[[int], None] | None = None) -> list[Sample]:
    """Run Locust for one round; return its samples. Raises ProcessError if Locust fails.

    ``on_start`` gets the Locust process id as soon as it runs (the CPU sampler).
    """
    samples_path = work_dir / "samples" / f"{spec.key}.jsonl"
    log_path = work_dir / "logs" / f"locust-{spec.key}.log"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    samples_path.unlink(missing_ok=True)
    argv = locust_command(spec, workload, samples_path)
    # Hard ceiling: run time, the drain, and Locust's own start-up and shutdown.
    limit_s = spec.duration_s + workload.stop_timeout_s + 60
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env(), cwd=PROJECT_ROOT)
        try:
            if on_start is not None:
                on_start(proc.pid)
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ProcessError(
                f"locust round {spec.key} did not finish within {limit_s} s\n"
                f"  log: {log_path}\n--- last lines ---\n{log_tail(log_path)}"
            ) from None
        except BaseException:
            proc.kill()  # Ctrl-C: the round's Locust must not outlive the bench
            proc.wait()
            raise
    if code != 0:
        raise ProcessError(
            f"locust round {spec.key} exited with status {code}\n"
            f"  command: {' '.join(argv)}\n  log: {log_path}\n"
            f"--- last lines of its log ---\n{log_tail(log_path)}"
        )
    samples = read_samples(samples_path)
    if not samples:
        raise ProcessError(
            f"locust round {spec.key} sent no request (see {log_path})\n"
            f"--- last lines of its log ---\n{log_tail(log_path)}"
        )
    return samples
