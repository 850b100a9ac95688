"""Loopback plumbing: free ports, readiness waits that notice a dead process, model discovery."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.harness import (
    ProcessError,
    Server,
    ServerDied,
    ServerNotReady,
    discover_model,
    free_port,
    log_tail,
    wait_ready,
)


class _Handler(BaseHTTPRequestHandler):
    models: list[dict] = [{"id": "first"}, {"id": "second"}]
    seen_auth: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen_auth.append(self.headers.get("Authorization"))
        if self.path == "/health":
            body, status = b"ok", 200
        elif self.path == "/v1/models":
            body, status = json.dumps({"object": "list", "data": type(self).models}).encode(), 200
        else:
            body, status = b"warming up", 503
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen_auth.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_free_port_can_be_bound_and_is_not_handed_out_twice():
    taken: set[int] = set()
    ports = [free_port(taken=taken) for _ in range(20)]
    assert len(set(ports)) == 20 and taken == set(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # nothing else holds it
        sock.listen()


def test_a_server_that_answers_200_is_ready(http_server):
    wait_ready(Server("stub", http_server + "/health"), timeout_s=10, poll_s=0.01)


def test_a_server_that_never_answers_200_times_out_saying_what_it_answered(http_server, tmp_path):
    log = tmp_path / "stub.log"
    log.write_text("still loading the model\n")
    with pytest.raises(ServerNotReady) as caught:
        wait_ready(
            [Server("stub", http_server + "/ready", log_path=log), Server("other", http_server + "/also")],
            timeout_s=0.2,
            poll_s=0.02,
        )
    message = str(caught.value)
    assert "stub was not ready at" in message and "(last: HTTP 503)" in message
    assert "also not ready: other" in message and "still loading the model" in message


def test_nothing_listening_is_not_ready_yet(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(ServerNotReady, match="last: ConnectError"):
        wait_ready(Server("nobody", url), timeout_s=0.1, poll_s=0.02)


def test_a_process_that_died_fails_the_wait_at_once_with_its_log(tmp_path):
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('bad config: port'); sys.exit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.wait(timeout=30)
    started = time.monotonic()
    with pytest.raises(ServerDied) as caught:
        wait_ready(Server("the gateway", f"http://127.0.0.1:{free_port()}/ready", proc, log), timeout_s=120)
    assert time.monotonic() - started < 60  # it did not wait out the two minutes
    message = str(caught.value)
    assert "the gateway exited with status 3 before" in message
    assert "bad config: port" in message and str(log) in message
    assert isinstance(caught.value, ProcessError)


def test_the_model_is_the_first_listed_and_the_key_is_sent(http_server):
    assert discover_model(http_server) == "first"
    assert discover_model(http_server + "/v1/", api_key="k1") == "first"
    assert _Handler.seen_auth == [None, "Bearer k1"]


def test_a_server_listing_no_model_is_an_error(http_server, monkeypatch):
    monkeypatch.setattr(_Handler, "models", [])
    with pytest.raises(ProcessError, match="lists no model; pass --model"):
        discover_model(http_server)


def test_log_tail(tmp_path):
    assert log_tail(tmp_path / "none.log") == "(no log written)"
    (tmp_path / "empty.log").write_text("")
    assert log_tail(tmp_path / "empty.log") == "(log is empty)"
    (tmp_path / "long.log").write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(tmp_path / "long.log", 2) == "line 98\nline 99"
