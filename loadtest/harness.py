"""Plumbing for servers on loopback: a free port, waiting until one answers, its model.

Shared by everything that starts servers and talks to them: the bench's child
processes, the soak, the simulator's self-bench, the locustfile and the test fixtures.
Waiting watches the process too, so a server that died is reported at once, with the
tail of its log, instead of as a timeout minutes later.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

LOOPBACK = "127.0.0.1"


class ProcessError(RuntimeError):
    """A server that failed to start, died or never got ready; the message names it and
    shows its log tail."""


class ServerDied(ProcessError):
    """The server's process exited while it was waited for."""


class ServerNotReady(ProcessError):
    """The server did not answer 200 at its ready URL within the time allowed."""


def free_port(host: str = LOOPBACK, *, taken: set[int] | None = None) -> int:
    """A port nothing listens on, not in ``taken`` (which it joins).

    The port is released before the server binds it; another process could take it in
    between, in which case the server fails to bind and says so in its log. ``taken``
    keeps servers started together from being handed the same port: the kernel may
    return a port again once its probe socket closed.
    """
    taken = taken if taken is not None else set()
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def log_tail(path: Path | None, lines: int = 25) -> str:
    if path is None or not path.exists():
        return "(no log written)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


class ReadyTarget(Protocol):
    """Something to wait for: its name, the URL that answers 200 once it is ready, whether
    its process exited, and what to show when it fails (command, log tail)."""

    name: str
    ready_url: str

    def exit_code(self) -> int | None: ...

    def details(self) -> str: ...


@dataclass
class Server:
    """A ``ReadyTarget`` for a server started by hand (``proc``: None when it is not our
    process, e.g. a thread or an external upstream: then only its URL is watched)."""

    name: str
    ready_url: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def details(self) -> str:
        if self.log_path is None:
            return ""
        return f"\n  log: {self.log_path}\n--- last lines of its log ---\n{log_tail(self.log_path)}"


def probe(client: httpx.Client, url: str) -> str | None:
    """None when ``url`` answers 200; else what it did answer (for the timeout message)."""
    try:
        status = client.get(url).status_code
    except httpx.TransportError as exc:  # not listening yet
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None if status == 200 else f"HTTP {status}"


def wait_ready(targets: ReadyTarget | Sequence[ReadyTarget], timeout_s: float, *, poll_s: float = 0.2) -> None:
    """Wait until every target answers 200 at its ready URL.

    Raises ``ServerDied`` naming the first whose process exited, or ``ServerNotReady``
    naming the ones still not ready at the deadline (with what they last answered).
    """
    waiting = [targets] if not isinstance(targets, Sequence) else list(targets)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            last: dict[int, str] = {}
            for i, target in enumerate(waiting):
                code = target.exit_code()
                if code is not None:
                    raise ServerDied(
                        f"{target.name} exited with status {code} before {target.ready_url} answered{target.details()}"
                    )
                answer = probe(client, target.ready_url)
                if answer is not None:
                    last[i] = answer
            waiting = [t for i, t in enumerate(waiting) if i in last]
            if not waiting:
                return
            if time.monotonic() > deadline:
                first = waiting[0]
                others = ", ".join(t.name for t in waiting[1:])
                raise ServerNotReady(
                    f"{first.name} was not ready at {first.ready_url} within {timeout_s:.0f} s "
                    f"(last: {next(iter(last.values()))})"
                    + (f" (also not ready: {others})" if others else "")
                    + first.details()
                )
            time.sleep(poll_s)


def discover_model(base_url: str, *, api_key: str = "", timeout_s: float = 30.0) -> str:
    """The first model ``GET /v1/models`` lists (the server's default)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/").removesuffix("/v1") + "/v1/models"
    response = httpx.get(url, headers=headers, timeout=timeout_s)
    response.raise_for_status()
    models = response.json().get("data") or []
    if not models:
        raise ProcessError(f"{url} lists no model; pass --model")
    return models[0]["id"]
