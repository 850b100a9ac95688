"""A Locust worker of a distributed bench run (``taxgate bench worker --master HOST:PORT``).

Started by the bench for ``--load-workers``, or by hand (or as Kubernetes pods) on other
machines for ``--expect-workers``. It connects to the master, then for every round
(see ``locustmaster``): takes the round's options, runs the users Locust deals it with
the locustfile's ``LLMUser``, numbers them from the first number the master gives it,
and when its share of the requests is answered (or time is up) sends the master its
samples and the CPU time it used, sampled through the round, so the bench's saturation
check covers this process wherever it runs.

Everything a round needs arrives from the master, the load prompts included (once per
prompt set): a worker on another machine needs no copy of ``--dataset``, and every
worker draws from the same list whatever its checkout holds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import gevent
from gevent.event import AsyncResult
from locust.env import Environment

from loadtest import locustfile
from loadtest.bench.loadlayout import add_master_flag, split_host_port
from loadtest.bench.rounds import round_options

CPU_EVERY_S = 0.2


class WorkerSide:
    """The worker's half of the round protocol, as Locust custom-message handlers."""

    def __init__(self, env: Environment, work_dir: Path) -> None:
        self.env = env
        self.runner = env.runner
        self.work_dir = work_dir
        self.key = ""
        self.sent = True
        self.prompts: list[str] = []  # the master's load prompts (the same on every machine)
        self.cpu: list[tuple[float, float]] = []
        self._sampler: gevent.Greenlet | None = None
        for name, handler in (
            ("taxgate_round", self.on_round),
            ("taxgate_first_user", self.on_first_user),
            ("taxgate_stop_sending", self.on_stop_sending),
        ):
            self.runner.register_message(name, handler)
        # After the locustfile's own listeners (it was imported first): the workload exists.
        env.events.test_start.add_listener(self.on_test_start)
        env.events.test_stop.add_listener(self.on_test_stop)

    @property
    def samples_path(self) -> Path:
        return self.work_dir / "samples.jsonl"

    def on_round(self, environment, msg) -> None:
        self.key, self.sent = msg.data["key"], False
        if msg.data.get("prompts") is not None:
            self.prompts = msg.data["prompts"]
        self.samples_path.unlink(missing_ok=True)
        # The locustfile's workload loads the bundled set, whole; its prompts are then the master's.
        options = {**msg.data["message"], "samples_out": str(self.samples_path), "dataset": "", "labels": "all"}
        environment.parsed_options = round_options(options)
        self.cpu = [(time.time(), time.process_time())]
        self._sampler = gevent.spawn(self._sample_cpu)

    def _sample_cpu(self) -> None:
        while True:
            gevent.sleep(CPU_EVERY_S)
            self.cpu.append((time.time(), time.process_time()))

    def on_test_start(self, environment, **_kwargs) -> None:
        workload = getattr(environment, "taxgate_workload", None)
        if workload is not None:
            workload.prompts = self.prompts
            workload.first_user = AsyncResult()
            workload.when_done = self.report

    def on_first_user(self, environment, msg) -> None:
        workload = getattr(environment, "taxgate_workload", None)
        if msg.data.get("key") != self.key or workload is None:
            return
        workload.max_requests = int(msg.data["max_requests"])
        workload.first_user.set(int(msg.data["first_user"]))
        if not msg.data["users"]:
            self.report()  # Locust dealt this worker no user this round

    def on_stop_sending(self, environment, msg) -> None:
        workload = getattr(environment, "taxgate_workload", None)
        if msg.data.get("key") == self.key and (workload is None or workload.stop_sending()):
            self.report()

    def on_test_stop(self, environment, **_kwargs) -> None:
        self.report()  # stopped by the master (ceiling): what was written so far

    def report(self) -> None:
        if self.sent:
            return
        self.sent = True
        if self._sampler is not None:
            self._sampler.kill(block=False)
        self.cpu.append((time.time(), time.process_time()))
        lines = []
        if self.samples_path.exists():
            lines = self.samples_path.read_text(encoding="utf-8").splitlines()
        self.runner.send_message(
            "taxgate_done",
            {
                "key": self.key,
                "samples": lines,
                "cpu": self.cpu,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "errors": len(self.runner.errors),
            },
        )


def run(args: argparse.Namespace) -> int:
    try:
        host, port = split_host_port(args.master, "--master")
    except ValueError as exc:
        print(f"taxgate bench worker: {exc}", file=sys.stderr)
        return 2
    work_dir = Path(tempfile.mkdtemp(prefix="taxgate-worker-"))
    env = Environment(user_classes=[locustfile.LLMUser], events=locustfile.events)
    try:
        env.create_worker_runner(host, port)
    except ConnectionError:
        print(
            f"taxgate bench worker: no Locust master answered at {host}:{port}; is "
            "`taxgate bench --expect-workers N` running there?",
            file=sys.stderr,
        )
        return 1
    WorkerSide(env, work_dir)
    print(
        f"taxgate bench worker: joined the Locust master at {host}:{port}; running its rounds until the bench ends",
        file=sys.stderr,
        flush=True,
    )
    try:
        env.runner.greenlet.join()
    except KeyboardInterrupt:
        env.runner.quit()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.locustworker", description=__doc__.split("\n\n")[0])
    add_master_flag(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
