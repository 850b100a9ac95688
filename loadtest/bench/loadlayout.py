"""Where a bench run's load comes from: one Locust process, or a master and workers.

Light on purpose (no Locust, no psutil): the options and the CLI use it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5557  # Locust's own default master port


@dataclass(frozen=True)
class LoadLayout:
    """Where the load comes from: ``local`` workers started here, ``remote`` ones joining."""

    local: int = 0
    remote: int = 0
    bind: str = ""  # HOST:PORT the master listens on for workers

    @property
    def workers(self) -> int:
        return self.local + self.remote

    @property
    def distributed(self) -> bool:
        return self.workers > 0

    def bind_address(self) -> tuple[str, int]:
        """Loopback and any free port for local workers only; all interfaces when others join."""
        if self.bind:
            return split_host_port(self.bind, "--master-bind")
        return (LOOPBACK, 0) if not self.remote else ("0.0.0.0", DEFAULT_PORT)

    def describe(self) -> str:
        if not self.distributed:
            return "load: one Locust process on this host"
        parts = [f"{self.local} on this host"] if self.local else []
        if self.remote:
            parts.append(f"{self.remote} joined from elsewhere (taxgate bench worker)")
        return (
            f"load: a Locust master and {self.workers} worker process(es), "
            f"{' and '.join(parts)}; users numbered across workers as in one process"
        )


def split_host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT, e.g. 10.0.0.5:{DEFAULT_PORT}")
    return host.strip("[]"), int(port)


def add_master_flag(parser: argparse.ArgumentParser) -> None:
    """``--master HOST:PORT`` of a Locust worker (``taxgate bench worker``, local workers)."""
    parser.add_argument(
        "--master",
        required=True,
        metavar="HOST:PORT",
        help="the run's Locust master: the host running `taxgate bench "
        f"--expect-workers N` and its --master-bind port (default {DEFAULT_PORT})",
    )
