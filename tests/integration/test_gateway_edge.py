"""The client edge on the real serving stack (uvicorn + httptools + the gateway's protocol):
read timeouts, no slash redirects, the metrics listener and key, shutdown grace."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.http_server import build_server
from gateway.settings import Settings
from tests.servers import ROOT, ThreadedServer, free_port, wait_http

pytestmark = pytest.mark.integration

MODEL = "slow"


def sse(text: str) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": MODEL,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
        )
        + b"\n\n"
    )


def slow_upstream() -> Starlette:
    """Streams ``max_tokens`` chunks, one every 50 ms, then [DONE]; not streamed, answers
    after as long."""

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        if not body.get("stream"):
            await asyncio.sleep(body.get("max_tokens", 5) * 0.05)
            return JSONResponse(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "model": MODEL,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
                    ],
                }
            )

        async def tokens():
            for i in range(body.get("max_tokens", 5)):
                yield sse(f"t{i} ")
                await asyncio.sleep(0.05)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/health", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def upstream():
    server = ThreadedServer(slow_upstream()).start()
    yield server
    server.stop()


class EdgeGateway:
    """The gateway as ``taxgate serve`` runs it (``build_server``), in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.app = create_app(settings, registry=self.registry)
        self.server, sockets = build_server(self.app, settings)
        self.base_url = f"http://127.0.0.1:{settings.port}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": sockets}, daemon=True)
        self._thread.start()
        wait_http(self.base_url + "/health", 30)

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture
def edge(upstream, tmp_path):
    running: list[EdgeGateway] = []

    def start(**overrides) -> EdgeGateway:
        data = {
            "upstreams": [upstream.base_url],
            "port": free_port(),
            "audit": {"path": str(tmp_path / "audit.db")},
            **overrides,
        }
        gateway = EdgeGateway(Settings.model_validate(data))
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


def read_all(sock: socket.socket, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; and whether it closed in time."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    return data, True


def error_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)["error"]


def connect(gateway: EdgeGateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.settings.port))


def test_slow_headers_get_408_and_the_connection_closes(edge):
    gateway = edge(timeouts={"client_header_s": 0.5})
    # The probe's case: many connections that never finish their headers.
    socks = [connect(gateway) for _ in range(60)]
    for i, sock in enumerate(socks):
        if i % 2:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for sock in socks:
        raw, closed = read_all(sock, 10)
        assert closed
        status, error = error_of(raw)
        assert status == 408 and error["code"] == "request_timeout"
        sock.close()
    assert gateway.sample("taxgate_requests_total", route="other", model="unknown", status="408") == 60
    assert httpx.get(gateway.base_url + "/health").status_code == 200


def test_oversized_headers_get_431(edge):
    gateway = edge(max_header_bytes=2048)
    with connect(gateway) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 4096
            + b"\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        raw, closed = read_all(sock, 10)
    assert closed and raw.count(b"HTTP/1.1") == 1  # the pipelined request after it never ran
    status, error = error_of(raw)
    assert status == 431 and error["code"] == "request_headers_too_large"


def test_body_shorter_than_its_length_gets_408_and_close(edge):
    gateway = edge(timeouts={"client_body_s": 0.5}, max_in_flight=1)
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model"'
        )
        raw, closed = read_all(sock, 10)
    assert closed
    status, error = error_of(raw)
    assert status == 408 and error["code"] == "request_timeout"
    assert b"connection: close" in raw.lower()
    assert gateway.sample("taxgate_requests_total", route="chat", model="unknown", status="408") == 1
    assert gateway.sample("taxgate_in_flight_requests") == 0
    # The one in-flight slot was freed: the next request is served.
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        timeout=10,
        json={"model": MODEL, "stream": True, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200 and "[DONE]" in response.text


def test_trailing_slash_is_404_not_a_redirect(edge):
    gateway = edge()
    response = httpx.post(gateway.base_url + "/v1/chat/completions/", json={}, headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "not_found"


def test_metrics_listener_serves_only_the_operator_endpoints(edge):
    ops_port = free_port()
    gateway = edge(api_keys=["k"], metrics={"listen": f"127.0.0.1:{ops_port}"})
    ops = f"http://127.0.0.1:{ops_port}"
    for path in ("/metrics", "/ready"):
        assert httpx.get(ops + path).status_code == 200
        main = httpx.get(gateway.base_url + path)
        assert main.status_code == 404 and main.json()["error"]["code"] == "not_found"
    refused = httpx.get(ops + "/v1/models", headers={"authorization": "Bearer k"})
    assert refused.status_code == 404
    assert httpx.get(gateway.base_url + "/v1/models", headers={"authorization": "Bearer k"}).status_code == 200
    assert httpx.get(ops + "/health").status_code == 200
    assert httpx.get(gateway.base_url + "/health").status_code == 200


def test_metrics_auth_asks_for_the_key(edge):
    gateway = edge(api_keys=["k"], metrics={"auth": True})
    for path in ("/metrics", "/ready"):
        denied = httpx.get(gateway.base_url + path)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        assert b"upstream" not in denied.content.replace(b"invalid_api_key", b"")
        assert httpx.get(gateway.base_url + path, headers={"authorization": "Bearer k"}).status_code == 200
    assert httpx.get(gateway.base_url + "/health").status_code == 200


def stream_lines(url: str, max_tokens: int, lines: list[str], started: threading.Event) -> None:
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        timeout=30,
        json={
            "model": MODEL,
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ) as response:
        for line in response.iter_lines():
            if line:
                lines.append(line)
                started.set()


def test_streams_open_at_the_end_of_the_grace_period_get_shutting_down(edge):
    gateway = edge(shutdown_grace_s=0.5)
    short: list[str] = []
    long: list[str] = []
    events = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=stream_lines, args=(gateway.base_url, n, out, ev))
        for n, out, ev in ((6, short, events[0]), (400, long, events[1]))
    ]
    for thread in threads:
        thread.start()
    for event in events:
        assert event.wait(10)
    gateway.stop()
    for thread in threads:
        thread.join(10)
    assert short[-1] == "data: [DONE]"  # finished within the grace period
    assert len(long) < 100
    assert orjson.loads(long[-1][6:])["error"]["code"] == "shutting_down"
    assert gateway.sample("taxgate_requests_total", route="chat", model=MODEL, status="503") == 1
    assert gateway.sample("taxgate_in_flight_requests") == 0


def test_requests_waiting_at_the_end_of_the_grace_period_get_503_shutting_down(edge):
    gateway = edge(shutdown_grace_s=0.5)
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(
            httpx.post(
                gateway.base_url + "/v1/chat/completions",
                timeout=30,
                json={"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": "hi"}]},
            )
        )

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 10
    while gateway.app.state.drain.open_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    gateway.stop()
    thread.join(10)
    assert answers[0].status_code == 503
    assert answers[0].json()["error"]["code"] == "shutting_down"
    assert gateway.sample("taxgate_requests_total", route="chat", model=MODEL, status="503") == 1
    assert gateway.sample("taxgate_in_flight_requests") == 0  # the slot was freed


def test_sigterm_reaches_the_streams(upstream, tmp_path):
    """The real process: ``taxgate serve`` and a SIGTERM."""
    port = free_port()
    config = tmp_path / "taxgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {"upstreams": [upstream.base_url], "port": port, "shutdown_grace_s": 0.5, "audit": {"enabled": False}}
        )
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", 60, proc=proc, log_path=tmp_path / "serve.log")
        lines: list[str] = []
        started = threading.Event()
        thread = threading.Thread(target=stream_lines, args=(url, 400, lines, started))
        thread.start()
        assert started.wait(10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        thread.join(10)
        assert orjson.loads(lines[-1][6:])["error"]["code"] == "shutting_down"
        # uvicorn re-raises the signal once shut down: the exit says what ended it.
        assert proc.wait(10) in (0, -signal.SIGTERM)
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
