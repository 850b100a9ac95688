"""``taxgate serve --workers N``: N gateway processes on one port, one ``/metrics``.

One gateway process uses one core (the event loop), so a machine with more cores
runs more workers. The parent binds the listening sockets, forks the workers (each
builds its own app, upstream pool and monitors after the fork, and accepts on the
shared socket: the kernel spreads connections), forwards SIGTERM/SIGINT to them, and
starts a worker again if one dies. Metrics go through prometheus_client's
multiprocess mode: each worker writes its values to files in one directory and any
worker's ``/metrics`` aggregates all of them, so a single scrape counts every request
whichever worker served it. The audit log of all workers is the one store they share
(SQLite in WAL mode with a busy timeout, or PostgreSQL).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

from prometheus_client import multiprocess, values

log = logging.getLogger("taxgate.workers")

# A worker that dies within this long of its start is not restarted in a loop forever.
_RESTART_BACKOFF_S = 1.0


def enable_multiprocess_metrics() -> str:
    """A fresh directory for the workers' metric files; metrics created from now on
    (in this process and the forked workers) write there."""
    path = tempfile.mkdtemp(prefix="taxgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # prometheus_client picked its value class when it was imported, before this.
    values.ValueClass = values.MultiProcessValue()
    return path


def _work(serve: Callable[[list[socket.socket]], int], sockets: list[socket.socket]) -> None:
    """A forked worker's life: serve, then exit with serve's code (never returns)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = 1
    try:
        code = serve(sockets)
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_workers(
    count: int, sockets: list[socket.socket], serve: Callable[[list[socket.socket]], int], metrics_dir: str
) -> int:
    """Fork ``count`` workers that each run ``serve(sockets)``; return when all stopped."""
    children: dict[int, float] = {}  # pid -> start time
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            _work(serve, sockets)
        children[pid] = time.monotonic()

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        spawn()
    worst = 0
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if started is None:
                continue
            multiprocess.mark_process_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                worst = max(worst, code if code > 0 else 0)
                continue
            if time.monotonic() - started < _RESTART_BACKOFF_S:
                # It cannot even start (a bad monitor, a port in use): stop them all.
                print(f"taxgate serve: worker {pid} exited with {code} at start; stopping", file=sys.stderr)
                stop(signal.SIGTERM, None)
                worst = max(worst, code if code > 0 else 1)
                continue
            log.warning("worker %d exited with %d; starting another", pid, code)
            spawn()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return worst
