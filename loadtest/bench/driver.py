"""The bench's load generator: one Locust process for the whole run, one round per request.

Run as ``python -m loadtest.bench.driver`` by ``rounds.LoadGenerator``. It imports
Locust and the locustfile once, prints ``ready``, then reads one JSON round spec
per stdin line and answers one JSON line when the round is over. Each round is a
fresh Locust ``Environment`` and ``LocalRunner`` (Locust used as a library, its
documented API) with the locustfile's ``LLMUser``: the same user code as
``locust -f loadtest/locustfile.py``, without paying Locust's start-up (1-2 s of CPU
on a busy 2-core machine) for each of the ~100 rounds of a default run.

A round ends when its request quota is answered, or at ``duration_s``: then no
new request starts and the in-flight ones finish (up to ``stop_timeout_s``), so no
request is cut off and the slow tail is not dropped.
"""

from __future__ import annotations

import json
import sys
import traceback

import gevent
from locust.env import Environment

from loadtest import locustfile
from loadtest.bench.rounds import round_options


def run_round(spec: dict) -> dict:
    env = Environment(
        user_classes=[locustfile.LLMUser],
        host=spec["host"],
        events=locustfile.events,
        parsed_options=round_options(spec),
    )
    runner = env.create_local_runner()
    users = int(spec["users"])
    # The loop's cached clock stood still while we blocked on stdin between rounds; timers
    # set from it would fire early by that long.
    gevent.get_hub().loop.update_now()
    runner.start(users, spawn_rate=users * 100)

    def time_is_up() -> None:
        workload = getattr(env, "taxgate_workload", None)
        if workload is None or workload.stop_sending():
            runner.quit()

    timers = [
        gevent.spawn_later(float(spec["duration_s"]), time_is_up),
        gevent.spawn_later(float(spec["duration_s"]) + float(spec["stop_timeout_s"]), runner.quit),
    ]
    runner.greenlet.join()
    gevent.killall(timers)
    return {"ok": True, "errors": len(runner.errors)}


def main() -> int:
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run_round(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - the bench reports it and stops the run
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
