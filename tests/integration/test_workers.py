"""`taxgate serve --workers 2`: two processes on one port, one aggregated /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.servers import ROOT, free_port, wait_http

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def _requests_counted(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taxgate_requests_total{") and 'route="chat"' in line
    )


def test_two_workers_serve_one_port_and_every_scrape_counts_all(tmp_path):
    sim_port, port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.sim",
            "--port",
            str(sim_port),
            "--profile",
            "instant",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    config = tmp_path / "taxgate.yaml"
    config.write_text(
        f"upstreams: [http://127.0.0.1:{sim_port}]\nport: {port}\n"
        f"audit: {{path: {tmp_path / 'audit.db'}}}\n"
        "monitors: [{name: pii, stages: [output], action: redact}]\n"
    )
    log = (tmp_path / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/health", 30, proc=sim)
        wait_http(base + "/ready", 60, proc=gateway, log_path=tmp_path / "gateway.log")
        assert len(_children(gateway.pid)) == 2
        body = {
            "model": "sim-llama-8b",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "mail bob@example.com"}],
        }
        served = 0
        for index in range(30):  # a new connection each time: the kernel spreads them
            with httpx.Client(timeout=30) as client:
                response = client.post(base + "/v1/chat/completions", json={**body, "stream": index % 2 == 0})
                assert response.status_code == 200
                assert "bob@example.com" not in response.text
                served += 1
        for _ in range(5):  # whichever worker answers the scrape, it counts all of them
            assert _requests_counted(base) == served
        assert "taxgate_in_flight_requests 0.0" in httpx.get(base + "/metrics").text
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            assert gateway.wait(30) == 0
        finally:
            if gateway.poll() is None:
                gateway.kill()
            sim.terminate()
            sim.wait(10)
            log.close()
    time.sleep(0.1)
    assert not _children(gateway.pid)
