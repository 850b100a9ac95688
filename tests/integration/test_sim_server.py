"""The simulator as deployed: ``python -m loadtest.sim`` (uvicorn, uvloop, httptools) on
loopback, driven by the real ``openai`` client and raw HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.servers import ROOT, free_port, wait_http

pytestmark = pytest.mark.integration

MODEL = "sim-test"
MAX_NUM_SEQS = 2


@dataclass
class Sim:
    base_url: str

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value from /metrics (labels beyond the defaults must match)."""
        wanted = {"model_name": MODEL, "engine": "0", **labels}
        for line in httpx.get(self.base_url + "/metrics", timeout=5).text.splitlines():
            if not line.startswith(name + "{"):
                continue
            raw_labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            pairs = dict(part.split("=", 1) for part in raw_labels.split(","))
            if {k: v.strip('"') for k, v in pairs.items()} == wanted:
                return float(value)
        raise AssertionError(f"{name} {wanted} not in /metrics")

    def wait_metric(self, name: str, value: float, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.metric(name) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed at {self.metric(name)}, expected {value}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.sim",
            "--profile",
            "tiny-cpu",
            "--port",
            str(port),
            "--model",
            MODEL,
            "--max-num-seqs",
            str(MAX_NUM_SEQS),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)
        yield Sim(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url + "/v1", api_key="unused", max_retries=0)


PROMPT = "Please say these exact words back to me."


def test_chat_non_streamed(client):
    response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert response.choices[0].message.content == PROMPT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == 9
    assert response.usage.total_tokens == response.usage.prompt_tokens + 9


def test_chat_streamed_with_usage(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PROMPT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9


def test_completions_streamed_and_not(client):
    whole = client.completions.create(model=MODEL, prompt="one two three", max_tokens=2)
    assert whole.choices[0].text == "one two"
    assert whole.choices[0].finish_reason == "length"
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(model=MODEL, prompt="one two three", stream=True)
    )
    assert streamed == "one two three"


@pytest.mark.parametrize("stream", [False, True])
def test_ignore_eos_gives_exactly_max_tokens(client, stream):
    kwargs = dict(
        model=MODEL, messages=[{"role": "user", "content": "Short."}], max_tokens=40, extra_body={"ignore_eos": True}
    )
    if not stream:
        assert client.chat.completions.create(**kwargs).usage.completion_tokens == 40
        return
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_malformed_json_is_400(sim):
    response = httpx.post(
        sim.base_url + "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_models_and_metrics_use_vllm_names(sim, client):
    # The chat model first (clients that take the first model get it), then the guard
    # classifier the simulator serves on /classify.
    assert [m.id for m in client.models.list()] == [MODEL, "sim-guard"]
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(sim.base_url + "/metrics").text
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:request_time_per_output_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
        "vllm:request_success_total",
    ):
        assert name + "{" in text, name
    assert f'model_name="{MODEL}"' in text
    assert sim.metric("vllm:generation_tokens_total") > 0


def long_stream(http: httpx.Client) -> httpx.Response:
    request = http.build_request(
        "POST",
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "stream": True,
            "ignore_eos": True,
            "max_tokens": 8000,
            "messages": [{"role": "user", "content": "on and on"}],
        },
    )
    response = http.send(request, stream=True)
    assert response.status_code == 200
    return response


def test_disconnects_free_running_and_waiting_slots(sim):
    aborted_before = sim.metric("vllm:request_success_total", finished_reason="abort")
    # Separate clients, so closing one response really closes its connection.
    clients = [httpx.Client(base_url=sim.base_url, timeout=10) for _ in range(MAX_NUM_SEQS + 1)]
    try:
        responses = [long_stream(http) for http in clients[:MAX_NUM_SEQS]]
        # Keep the iterators: a dropped one is closed, and closing hangs up.
        readers = [response.iter_raw() for response in responses]
        for reader in readers:
            next(reader)  # a first token: it is running
        queued = long_stream(clients[-1])  # headers come at once; tokens only once admitted
        sim.wait_metric("vllm:num_requests_running", MAX_NUM_SEQS)
        sim.wait_metric("vllm:num_requests_waiting", 1)
        queued.close()
        clients[-1].close()
        sim.wait_metric("vllm:num_requests_waiting", 0)
        for response, http in zip(responses, clients, strict=False):  # the last client closed above
            response.close()
            http.close()
        sim.wait_metric("vllm:num_requests_running", 0)
    finally:
        for http in clients:
            http.close()
    aborted = sim.metric("vllm:request_success_total", finished_reason="abort")
    assert aborted == aborted_before + MAX_NUM_SEQS + 1
