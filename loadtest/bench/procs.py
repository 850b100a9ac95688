"""Child processes of a bench run: start with a log file, wait for readiness, always stop.

Every server the bench needs (simulator, one gateway per scenario) is a
``ManagedProcess`` in a ``ProcessGroup``; leaving the group's ``with`` block stops
them all, whether the run finished, failed or was interrupted with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from loadtest.harness import ProcessError, log_tail, wait_ready

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, with the project importable and output unbuffered.

    ``TAXGATE_*`` variables are dropped: the gateway reads them as settings, and a
    bench scenario must be exactly what its generated config file says.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXGATE_")}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ManagedProcess:
    """A server child: ``argv`` run with stdout+stderr to ``log_path``, ready at ``ready_url``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, ready_url: str, base_url: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.ready_url = ready_url
        self.base_url = base_url
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # Own session: a Ctrl-C in the terminal reaches only the bench, which then
            # stops the children in order instead of all of them dying mid-write.
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                cwd=PROJECT_ROOT,
                start_new_session=True,
            )

    def details(self) -> str:
        return (
            f"\n  command: {' '.join(self.argv)}\n  log: {self.log_path}\n"
            f"--- last lines of its log ---\n{log_tail(self.log_path)}"
        )

    def failure(self, what: str) -> ProcessError:
        return ProcessError(f"{self.name} {what}{self.details()}")

    def exit_code(self) -> int | None:
        if self.proc is None:
            raise self.failure("was never started")
        return self.proc.poll()

    def check_alive(self) -> None:
        code = self.exit_code()
        if code is not None:
            raise self.failure(f"exited with status {code}")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


class ProcessGroup:
    """Starts children together, waits for all to be ready, stops them in reverse order."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def start_all(self) -> None:
        for process in self.processes:
            process.start()

    def wait_ready(self, timeout_s: float, poll_s: float = 0.2) -> None:
        """Wait until every child answers 200 at its ready URL; raise naming the first that
        died or the ones still not ready at the deadline."""
        wait_ready(self.processes, timeout_s, poll_s=poll_s)

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()
