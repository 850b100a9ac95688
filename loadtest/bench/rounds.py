"""One measured round: Locust running one scenario at one concurrency.

Rounds run in one long-lived load-generator process (``driver``: Locust as a
library, with the locustfile's user), so the ~100 rounds of a run do not each pay
Locust's start-up. Every request is written as a JSON line that the bench reads
back. All users are spawned at once and each waits a random part of ``stagger_s``
before its first request, so they do not run in lockstep. A round ends once
``requests`` requests were answered or, as a ceiling, after ``duration_s``; then no
new request starts and the in-flight ones finish (``stop_timeout_s``), so no request
is cut off and the slowest ones are not silently dropped from the tail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench.procs import PROJECT_ROOT, child_env
from loadtest.bench.samples import Sample, read_samples
from loadtest.harness import ProcessError, log_tail


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
    route: str = "chat"


@dataclass(frozen=True)
class RoundSpec:
    scenario: str
    concurrency: int
    repeat: int
    url: str
    duration_s: int  # a ceiling when ``requests`` is set
    requests: int = 0  # 0: run for duration_s
    stagger_s: float = 0.0
    api_key: str = field(default="", repr=False)  # a --target's bearer key

    @property
    def key(self) -> str:
        return f"r{self.repeat}-c{self.concurrency}-{self.scenario}"


def round_message(spec: RoundSpec, workload: Workload, samples_path: Path) -> dict:
    """The driver's instructions for one round (see ``driver.round_options``)."""
    return {
        "host": spec.url,
        "users": spec.concurrency,
        "requests": spec.requests,
        "duration_s": spec.duration_s,
        "stop_timeout_s": workload.stop_timeout_s,
        "stagger_s": spec.stagger_s,
        "model": workload.model,
        "max_tokens": workload.max_tokens,
        "labels": workload.labels,
        "dataset": str(workload.dataset) if workload.dataset is not None else "",
        "ignore_eos": workload.ignore_eos,
        "route": workload.route,
        # The same prompt order in every scenario's round r: paired comparisons.
        "prompt_seed": workload.seed * 1000 + spec.repeat,
        "samples_out": str(samples_path),
        "api_key": spec.api_key,
    }


def round_options(message: dict) -> argparse.Namespace:
    """The locustfile's options, as its command line would give them, for one round message."""
    return argparse.Namespace(
        dataset=message.get("dataset") or "",
        labels=message.get("labels", "benign"),
        model=message["model"],
        max_tokens=int(message["max_tokens"]),
        route=message.get("route", "chat"),
        ignore_eos=bool(message.get("ignore_eos", True)),
        api_key=message.get("api_key", ""),
        prompt_seed=int(message.get("prompt_seed", 0)),
        itl_events="none",  # the samples file has every gap; spare the load generator
        samples_out=message["samples_out"],
        stagger_s=float(message.get("stagger_s", 0.0)),
        max_requests=int(message.get("requests", 0)),
    )


class LoadGenerator:
    """The driver process: started once, sent one round at a time, stopped at the end."""

    def __init__(self, log_path: Path, start_timeout_s: float = 120.0) -> None:
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the load generator is not running")
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loadtest.bench.driver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
                cwd=PROJECT_ROOT,
                start_new_session=True,
                text=True,
                bufsize=1,
            )
        if self._read_line(self.start_timeout_s) != "ready":
            raise self._failure("did not start")

    def run(self, message: dict, timeout_s: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise self._failure("is not running")
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self._read_line(timeout_s)
        try:
            answer = json.loads(line)
        except ValueError:
            raise self._failure(f"answered {line[:200]!r} instead of a round result") from None
        if not answer.get("ok"):
            raise self._failure(f"failed a round: {answer.get('error')}\n{answer.get('traceback', '')}")
        return answer

    def _read_line(self, timeout_s: float) -> str:
        # readline() has no timeout; a helper thread gives it one (a hung driver must not
        # hang the bench).
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self.stop()
            raise self._failure(f"gave no answer within {timeout_s:.0f} s")
        return result[0].strip() if result else ""

    def _failure(self, what: str) -> ProcessError:
        return ProcessError(
            f"the load generator (Locust) {what}\n  log: {self.log_path}\n"
            f"--- last lines of its log ---\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.close()  # EOF: the driver's loop ends
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_round(spec: RoundSpec, workload: Workload, work_dir: Path, generator: LoadGenerator) -> list[Sample]:
    """Run one round in the load generator; return its samples."""
    samples_path = work_dir / "samples" / f"{spec.key}.jsonl"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    samples_path.unlink(missing_ok=True)
    # Hard ceiling: run time, the drain, and the round's own set-up.
    limit_s = spec.duration_s + workload.stop_timeout_s + 60
    generator.run(round_message(spec, workload, samples_path), limit_s)
    samples = read_samples(samples_path)
    if not samples:
        raise ProcessError(
            f"locust round {spec.key} sent no request (see {generator.log_path})\n"
            f"--- last lines of its log ---\n{log_tail(generator.log_path)}"
        )
    return samples
