"""The dashboard and the rules tell the truth: every query returns data from a real Prometheus.

Real servers on loopback: the simulator (vLLM's API and vllm:* metrics), two gateways
with monitors in front of it (one holding streams back, one streaming first), and
Debian's Prometheus binary scraping all three every second with deploy/'s rules
loaded. Traffic covers what the panels show: passes, input and output blocks
(streamed and not), redactions, shadow hits, a monitor that times out and fails open,
a dead upstream, a client that leaves mid-stream. Then every PromQL expression of
the dashboard (template variables filled as Grafana's "All" does) and of the recording
rules must return at least one non-NaN sample, and every alert rule must be loaded
and healthy. A metric renamed in code and not in deploy/ fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from loadtest.sim.server import create_sim_app
from loadtest.sim.settings import SimSettings
from tests.servers import ThreadedServer, free_port, wait_http
from tests.unit.deploy import deployfiles as files

pytestmark = pytest.mark.integration

MODEL = "sim-observed"
INPUT_WORD = "forbidden-alpha"  # the input blocklist refuses prompts with it
OUTPUT_WORD = "forbidden-omega"  # passes input; the echoed output is then blocked
BENIGN = (
    "Tell me about rivers, mountains and the gardens that grow between them, "
    "with a long and calm description of each season in turn. "
) * 3
# The word sits mid-text, so stream_first has sent part of the window when it is caught.
BLOCKED_OUTPUT = BENIGN + OUTPUT_WORD + " and then some more words to close the answer."
MONITORS = [
    {"name": "blocklist", "id": "blocklist-in", "stages": ["input"], "action": "block", "keywords": [INPUT_WORD]},
    # A pattern of its own runs in the micro-batcher's thread: the batch panels need one.
    {
        "name": "blocklist",
        "id": "blocklist-out",
        "stages": ["output"],
        "action": "block",
        "patterns": [rf"\b{OUTPUT_WORD}\b"],
    },
    {"name": "pii", "stages": ["input", "output"], "action": "redact"},
    {
        "name": "profanity",
        "id": "profanity-shadow",
        "stages": ["input", "output"],
        "action": "shadow",
        "threshold": 0.5,
    },
    # Can never answer within 1 µs: a timeout on every check, let through (fail open).
    {
        "name": "profanity",
        "id": "profanity-hasty",
        "stages": ["input"],
        "action": "block",
        "timeout_ms": 0.001,
        "on_error": "open",
    },
]
DEADLINE_S = 60


@dataclass
class Prometheus:
    proc: subprocess.Popen
    base_url: str

    def query(self, promql: str) -> list[dict]:
        response = httpx.get(f"{self.base_url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus rejected {promql!r}: {body.get('error')}")
        return body["data"]["result"]

    def rules(self) -> list[dict]:
        body = httpx.get(f"{self.base_url}/api/v1/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def label_values(self, label: str, match: str) -> list[str]:
        body = httpx.get(f"{self.base_url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10).json()
        return body["data"]


@pytest.fixture
def sim() -> Iterator[ThreadedServer]:
    settings = SimSettings(profile="tiny-cpu", output_mode="echo", model=MODEL, seed=0)
    server = ThreadedServer(create_sim_app(settings)).start()
    yield server
    server.stop()


def start_prometheus(workdir: Path, targets: dict[str, list[str]]) -> Prometheus:
    binary = files.tool("prometheus")
    if binary is None:
        pytest.fail(
            "no prometheus binary: apt-get install -y --no-install-recommends "
            "prometheus (the test starts its own; the service is not needed)"
        )
    port = free_port()
    targets = {**targets, "prometheus": [f"127.0.0.1:{port}"]}
    # deploy/'s own config with test targets and a 1 s rhythm, so it is proven to load.
    config = yaml.safe_load((files.DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(path) for path in files.RULE_FILES]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "prometheus.log"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    prometheus = Prometheus(proc, f"http://127.0.0.1:{port}")
    try:
        wait_http(prometheus.base_url + "/-/ready", 60, proc=proc, log_path=log_path)
    except BaseException:
        stop(proc)
        raise
    return prometheus


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- traffic ---------------------------------------------------------------------------
def chat(client: httpx.Client, base: str, text: str, *, stream: bool, max_tokens: int = 80) -> tuple[int, str]:
    """(status, finish_reason or error code) of one chat completion."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "stream": stream}
    if not stream:
        response = client.post(f"{base}/v1/chat/completions", json=body)
        data = response.json()
        if response.status_code != 200:
            return response.status_code, data["error"]["code"]
        return 200, data["choices"][0]["finish_reason"]
    finish = ""
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, response.json()["error"]["code"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0].get("finish_reason"):
                    finish = choices[0]["finish_reason"]
    return 200, finish


def completion(client: httpx.Client, base: str, *, stream: bool) -> int:
    body = {"model": MODEL, "prompt": BENIGN, "max_tokens": 40, "stream": stream}
    with client.stream("POST", f"{base}/v1/completions", json=body) as response:
        response.read()
        return response.status_code


def leave_mid_stream(client: httpx.Client, base: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": BENIGN}],
        "max_tokens": 400,
        "stream": True,
        "ignore_eos": True,
    }
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    # Leaving the block closes the connection with the stream still running.


def send_traffic(base: str) -> None:
    with httpx.Client(timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:  # concurrent, so monitor batches exceed one
            benign = list(pool.map(lambda i: chat(client, base, BENIGN, stream=bool(i % 2)), range(8)))
        assert all(status == 200 for status, _ in benign), benign
        assert completion(client, base, stream=False) == 200
        assert completion(client, base, stream=True) == 200
        for stream in (False, True):
            assert chat(client, base, f"Please {INPUT_WORD} now", stream=stream) == (400, "content_blocked")
            assert chat(client, base, BLOCKED_OUTPUT, stream=stream, max_tokens=200) == (200, "content_filter")
            assert chat(client, base, "Mail me at jane.doe@example.com please", stream=stream)[0] == 200
            assert chat(client, base, "you are a fucking idiot", stream=stream)[0] == 200
        leave_mid_stream(client, base)


# -- checking ----------------------------------------------------------------------------
def without_data(prometheus: Prometheus, exprs: list[tuple[str, str]]) -> list[str]:
    """The expressions that return no sample, or only NaN ones."""
    failing = []
    for where, expr in exprs:
        values = [float(series["value"][1]) for series in prometheus.query(expr)]
        if not values or all(math.isnan(value) for value in values):
            failing.append(f"{where}: {expr}")
    return failing


def checked_expressions() -> list[tuple[str, str]]:
    exprs = [(f"panel {title!r}", files.to_promql(expr)) for title, expr in files.dashboard_queries()]
    exprs += [(f"rule {rule['record']}", rule["expr"]) for rule in files.recording_rules()]
    # The recorded series themselves prove the rules evaluate, not only parse.
    exprs += [(f"recorded {name}", name) for name in sorted({rule["record"] for rule in files.recording_rules()})]
    return exprs


def test_every_dashboard_and_rule_expression_returns_data(start_gateway, sim, tmp_path):
    started = time.monotonic()
    dead_upstream = f"http://127.0.0.1:{free_port()}"  # first in line: connect errors
    # A guard model on a serving engine (the simulator's /classify): the engine-call panels.
    guard = {
        "name": "classifier",
        "id": "guard",
        "stages": ["input", "output"],
        "action": "annotate",
        "threshold": 0.99,
        "base_url": sim.base_url,
        "model": "sim-guard",
        "labels": ["safe", "unsafe"],
        "flag_labels": ["unsafe"],
    }
    common = {"upstreams": [dead_upstream, sim.base_url], "monitors": [*MONITORS, guard], "ready_path": "/ready"}
    holdback = start_gateway(**common, streaming={"mode": "holdback", "overlap_chars": 16})
    stream_first = start_gateway(**common, streaming={"mode": "stream_first", "overlap_chars": 16})
    gateways = [holdback, stream_first]
    prometheus = start_prometheus(
        tmp_path,
        {
            "taxgate": [g.base_url.removeprefix("http://") for g in gateways],
            "vllm": [sim.base_url.removeprefix("http://")],
        },
    )
    try:
        # Two waves a few scrapes apart: a rate needs the counter to move between samples.
        for _wave in range(2):
            for gateway in gateways:
                send_traffic(gateway.base_url)
            time.sleep(3)
        assert holdback.sample("taxgate_stream_blocks_total", mode="holdback") > 0
        assert stream_first.sample("taxgate_stream_blocks_total", mode="stream_first") > 0

        exprs = checked_expressions()
        deadline = time.monotonic() + DEADLINE_S
        while (failing := without_data(prometheus, exprs)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not failing, "expressions in deploy/ that return no data from the real gateway:\n" + "\n".join(failing)
        assert MODEL in prometheus.label_values("model", "taxgate_requests_total")

        # The check itself catches a rename: the same panels with one metric renamed.
        renamed = [
            (where, expr.replace("taxgate_ttft_seconds", "taxgate_ttft_secs"))
            for where, expr in exprs
            if "taxgate_ttft_seconds_bucket" in expr
        ]
        assert renamed and len(without_data(prometheus, renamed)) == len(renamed)

        loaded = {rule["name"]: rule for rule in prometheus.rules()}
        expected = {rule["alert"] for rule in files.alerting_rules()} | {
            rule["record"] for rule in files.recording_rules()
        }
        assert expected <= set(loaded), f"rules not loaded: {sorted(expected - set(loaded))}"
        unhealthy = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"}
        assert not unhealthy, f"rules failing to evaluate: {unhealthy}"
        alerts = [rule for rule in loaded.values() if rule["type"] == "alerting"]
        assert len(alerts) == len(files.alerting_rules())
    finally:
        stop(prometheus.proc)
    assert time.monotonic() - started < 120, "keep this test under two minutes"
