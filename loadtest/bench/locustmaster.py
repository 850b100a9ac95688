"""The Locust master of a distributed bench run: rounds in on stdin, one answer line each.

Run by ``distributed.DistributedGenerator`` as ``python -m loadtest.bench.locustmaster``.
It binds Locust's master port, prints ``listening PORT``, waits for ``--workers``
workers and prints ``ready``; then each stdin line is a round message (as for
``driver.py``) and each answer a JSON line.

One round, with Locust's ``MasterRunner`` (its documented messages and custom messages):

1. ``taxgate_round`` to every worker: the round's locustfile options (the worker writes
   its samples to a file of its own) and, the first time, the load prompts;
2. ``start(users)``: Locust deals the users to the workers; each reports its count;
3. ``taxgate_first_user`` to each worker, in Locust's worker-index order: the number of
   its first user (so the users are numbered 0..N-1 across workers, the prompts of one
   process) and its share of the round's request quota;
4. at ``duration_s`` ``taxgate_stop_sending``; a worker whose quota is answered and whose
   requests have all come back sends ``taxgate_done`` with its samples and its CPU series;
5. once every worker is done, Locust's ``stop``, and the workers are ready for the next.

A worker that goes missing (no heartbeat) or quits mid-round fails the round with a
message naming it; the bench then ends the run with the rounds it has.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import uuid
from pathlib import Path

import gevent
from gevent.fileobject import FileObjectThread
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_MISSING, STATE_RUNNING

from loadtest import locustfile
from loadtest.bench.distributed import WORKER_LOST_S, first_users, split_quota
from loadtest.bench.loadlayout import split_host_port
from loadtest.datasets import load_dataset

POLL_S = 0.02
SPAWN_TIMEOUT_S = 30.0
DONE_GRACE_S = 15.0  # after the hard ceiling, for the workers' last reports


class RoundFailed(Exception):
    """A round the workers could not finish (one was lost): the bench ends the run with a partial report."""


class Coordinator:
    """Locust's ``MasterRunner`` driven one round at a time (see the module's protocol)."""

    def __init__(self, workers: int, bind: tuple[str, int]) -> None:
        self.expected = workers
        self.env = Environment(user_classes=[locustfile.LLMUser], events=locustfile.events)
        self.runner = self.env.create_master_runner(*bind)
        self.runner.register_message("taxgate_done", self._on_done)
        self.key = ""
        self.done: dict[str, dict] = {}
        # The load prompts go to the workers from here (the same list on every machine), once
        # per worker and prompt set: (dataset, labels) -> (id, prompts); worker -> id it has.
        self._prompts: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self._sent: dict[str, str] = {}

    @property
    def port(self) -> int:
        return self.runner.server.port

    def _on_done(self, environment, msg) -> None:
        if msg.data.get("key") == self.key:
            self.done[msg.node_id] = msg.data

    def wait_for_workers(self, timeout_s: float) -> str | None:
        """None once every expected worker is ready; else what is missing."""
        deadline = time.monotonic() + timeout_s
        while len(self.runner.clients.ready) < self.expected:
            if time.monotonic() > deadline:
                return (
                    f"only {len(self.runner.clients.ready)} of {self.expected} Locust "
                    f"workers joined within {timeout_s:.0f} s; start the missing ones with "
                    f"`taxgate bench worker --master HOST:{self.port}`"
                )
            gevent.sleep(POLL_S)
        return None

    def _name(self, client_id: str) -> str:
        host = client_id.rsplit("_", 1)[0]
        return f"worker {self.runner.get_worker_index(client_id) + 1} on {host}"

    def _lost(self, clients: list[str]) -> list[str]:
        present = self.runner.clients
        return [
            self._name(c)
            for c in clients
            if c not in self.done and (c not in present or present[c].state == STATE_MISSING)
        ]

    def run_round(self, message: dict) -> dict:
        missing = self.wait_for_workers(WORKER_LOST_S)
        if missing:
            raise RoundFailed(f"lost a worker before the round: {missing}")
        clients = sorted((c.id for c in self.runner.clients.ready), key=self.runner.get_worker_index)
        self.key, self.done = uuid.uuid4().hex, {}
        self.env.host = message["host"]
        self._send_round(clients, {k: v for k, v in message.items() if k != "samples_out"})
        users = int(message["users"])
        try:
            self.runner.start(users, spawn_rate=users * 100)
            self._deal(clients, int(message.get("requests", 0)))
            cut = self._wait_done(clients, float(message["duration_s"]), float(message["stop_timeout_s"]))
        finally:
            self._stop(len(clients))
        return self._answer(clients, Path(message["samples_out"]), cut)

    def _send_round(self, clients: list[str], options: dict) -> None:
        prompts_id, prompts = self._prompts_for(options.get("dataset") or "", options.get("labels", "benign"))
        for client in clients:
            fresh = self._sent.get(client) != prompts_id
            self.runner.send_message(
                "taxgate_round",
                {
                    "key": self.key,
                    "message": options,
                    "prompts_id": prompts_id,
                    "prompts": prompts if fresh else None,
                },
                client_id=client,
            )
            self._sent[client] = prompts_id

    def _prompts_for(self, dataset: str, labels: str) -> tuple[str, list[str]]:
        if (dataset, labels) not in self._prompts:
            wanted = None if labels in ("", "all") else labels.split(",")
            prompts = [item.text for item in load_dataset(dataset or None, labels=wanted)]
            self._prompts[(dataset, labels)] = (uuid.uuid4().hex, prompts)
        return self._prompts[(dataset, labels)]

    def _deal(self, clients: list[str], requests: int) -> None:
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        present = self.runner.clients
        while not all(c in present and present[c].state == STATE_RUNNING for c in clients):
            lost = self._lost(clients)
            if lost or time.monotonic() > deadline:
                raise RoundFailed(f"lost a worker while spawning users: {', '.join(lost) or 'timeout'}")
            gevent.sleep(POLL_S)
        counts = [present[c].user_count for c in clients]
        for client, count, first, quota in zip(
            clients, counts, first_users(counts), split_quota(requests, counts), strict=True
        ):
            self.runner.send_message(
                "taxgate_first_user",
                {
                    "key": self.key,
                    "first_user": first,
                    "max_requests": quota,
                    "users": count,
                },
                client_id=client,
            )

    def _wait_done(self, clients: list[str], duration_s: float, stop_timeout_s: float) -> bool:
        """Until every worker reported; True when the hard ceiling cut the round short."""
        soft = time.monotonic() + duration_s
        hard = soft + stop_timeout_s
        stop_sent = False
        while len(self.done) < len(clients):
            lost = self._lost(clients)
            if lost:
                raise RoundFailed(
                    f"lost a worker mid-round: {', '.join(lost)} stopped answering "
                    "(its process died, or its host or network failed)"
                )
            now = time.monotonic()
            if now > soft and not stop_sent:
                self.runner.send_message("taxgate_stop_sending", {"key": self.key})
                stop_sent = True
            if now > hard:
                return self._cut(clients)
            gevent.sleep(POLL_S)
        return False

    def _cut(self, clients: list[str]) -> bool:
        self.runner.send_message("stop")  # users killed; each worker reports what it wrote
        deadline = time.monotonic() + DONE_GRACE_S
        while len(self.done) < len(clients) and time.monotonic() < deadline:
            gevent.sleep(POLL_S)
        return True

    def _stop(self, workers: int) -> None:
        self.runner.stop(send_stop_to_client=False)
        self.runner.send_message("stop")
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        present = self.runner.clients
        while sum(1 for c in present.all if c.state == STATE_INIT) < workers:
            if time.monotonic() > deadline:
                return  # the next round names who is missing
            gevent.sleep(POLL_S)

    def _answer(self, clients: list[str], samples_out: Path, cut: bool) -> dict:
        samples_out.parent.mkdir(parents=True, exist_ok=True)
        reports = {c: self.done[c] for c in clients if c in self.done}
        with samples_out.open("w", encoding="utf-8") as out:
            for report in reports.values():
                out.writelines(line + "\n" for line in report.get("samples", ()))
        processes = [{"name": self._name(c), "pid": r.get("pid"), "cpu": r.get("cpu", [])} for c, r in reports.items()]
        return {
            "ok": True,
            "errors": sum(r.get("errors", 0) for r in reports.values()),
            "cut": cut,
            "processes": processes,
        }

    def quit(self) -> None:
        self.runner.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.locustmaster")
    parser.add_argument("--bind", required=True, help="HOST:PORT for the workers (port 0: any)")
    parser.add_argument("--workers", type=int, required=True, help="workers to wait for")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for them")
    args = parser.parse_args(argv)
    coordinator = Coordinator(args.workers, split_host_port(args.bind, "--bind"))
    print(f"listening {coordinator.port}", flush=True)
    missing = coordinator.wait_for_workers(args.timeout)
    print(missing or "ready", flush=True)
    if missing:
        coordinator.quit()
        return 1
    try:
        serve(coordinator)
    finally:
        coordinator.quit()
    return 0


def serve(coordinator: Coordinator) -> None:
    # Read in gevent's thread pool: the runner's heartbeats go on while the bench is busy.
    for line in FileObjectThread(sys.stdin):
        if not line.strip():
            continue
        try:
            answer = coordinator.run_round(json.loads(line))
        except RoundFailed as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the bench reports it and stops the run
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    sys.exit(main())
