"""OpenTelemetry traces end to end: the real gateway and the real vLLM CPU server export
OTLP/HTTP to the session's stand-in collector (``tests/otlp.py``, which decodes the
protobuf with ``opentelemetry-proto``), and a collector in trouble costs no request."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from loadtest.sim.server import create_sim_app
from loadtest.sim.settings import SimSettings
from tests.otlp import OtlpReceiver
from tests.servers import ROOT, ThreadedServer, free_port, wait_http
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

# profanity annotates: a block would close the upstream request mid-answer, and vLLM
# exports no span for a request it aborted (random weights write random words).
MONITORS = [
    {"name": "pii", "stages": ["input", "output"], "action": "redact"},
    {"name": "profanity", "stages": ["input", "output"], "action": "annotate", "threshold": 0.95},
]
PROMPT = [{"role": "user", "content": "Write to me at jane.doe@example.com about the harbour."}]


def tracing_to(url: str, **extra) -> dict:
    return {"endpoint": url, "schedule_delay_ms": 20, **extra}


async def test_one_trace_from_the_client_through_the_monitors_to_vllm(start_gateway, vllm_server, otlp_receiver):
    gateway = start_gateway(
        upstreams=[vllm_server.base_url], monitors=MONITORS, tracing=tracing_to(otlp_receiver.base_url)
    )
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model=vllm_server.model,
        messages=PROMPT,
        max_tokens=32,
        temperature=1.0,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
        extra_headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
    )
    chunks = [chunk async for chunk in stream if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"  # vLLM finished it: not aborted

    def spans(kind: str | None = None, service: str = "taxgate") -> list:
        return [
            span
            for span in otlp_receiver.spans(trace_id)
            if span.service == service and (kind is None or span.kind == kind)
        ]

    def complete() -> bool:
        vllm = [span for span in otlp_receiver.spans(trace_id) if span.service != "taxgate"]
        return bool(spans("server")) and len(spans()) >= 6 and bool(vllm)

    try:
        await wait_until(complete, timeout_s=60, what="the gateway's and vLLM's spans at the collector")
    except AssertionError as exc:
        seen = [(span.service, span.kind, span.name, span.trace_id == trace_id) for span in otlp_receiver.spans()]
        raise AssertionError(
            f"{exc}; the collector holds {seen}; {otlp_receiver.requests} exports, errors {otlp_receiver.errors}"
        ) from None
    [server] = spans("server")
    assert server.parent_span_id == client_span  # continues the client's trace
    assert server.name == "POST /v1/chat/completions"
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.request.model"] == vllm_server.model
    assert server.attributes["gen_ai.response.model"] == vllm_server.model
    assert server.attributes["gen_ai.usage.output_tokens"] == 32  # vLLM's usage
    assert server.attributes["gen_ai.usage.input_tokens"] > 0
    assert server.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert server.attributes["http.response.status_code"] == 200
    [upstream] = spans("client")
    assert upstream.parent_span_id == server.span_id and "first byte" in upstream.events
    monitors = {span.name: span for span in spans("internal")}
    assert set(monitors) == {f"monitor {m} {stage}" for m in ("pii", "profanity") for stage in ("input", "output")}
    assert all(span.parent_span_id == server.span_id for span in monitors.values())
    assert monitors["monitor pii input"].attributes["taxgate.monitor.action"] == "redact"
    assert monitors["monitor pii output"].attributes["taxgate.monitor.checks"] >= 1
    # vLLM continued the trace under the gateway's upstream call.
    vllm = [span for span in otlp_receiver.spans(trace_id) if span.service != "taxgate"]
    assert upstream.span_id in {span.parent_span_id for span in vllm}, vllm


@pytest.fixture(scope="module")
def sim():
    settings = SimSettings(profile="tiny-cpu", output_mode="echo", model="sim-traced", seed=0)
    server = ThreadedServer(create_sim_app(settings)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("trouble", ["down", "refusing", "slow"])
async def test_a_collector_in_trouble_costs_no_request(start_gateway, sim, trouble, caplog):
    collector = None
    if trouble == "down":
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    else:
        collector = OtlpReceiver(
            status=503 if trouble == "refusing" else 200, delay_s=2.0 if trouble == "slow" else 0.0
        ).start()
        url = collector.base_url
    try:
        plain = start_gateway(upstreams=[sim.base_url], monitors=MONITORS[:1])
        traced = start_gateway(upstreams=[sim.base_url], monitors=MONITORS[:1], tracing=tracing_to(url, timeout_s=0.3))
        answers = []
        with caplog.at_level(logging.WARNING, logger="taxgate.tracing"):
            for gateway in (plain, traced):
                client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
                for _ in range(3):
                    whole = await client.chat.completions.create(model="sim-traced", messages=PROMPT)
                    stream = await client.chat.completions.create(model="sim-traced", messages=PROMPT, stream=True)
                    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                    answers.append((gateway is traced, whole.choices[0].message.content, streamed))
            await wait_until(
                lambda: traced.sample("taxgate_trace_spans_failed_total") > 0,
                timeout_s=30,
                what="a failed export counted",
            )
        assert {answer[1:] for answer in answers if answer[0]} == {answer[1:] for answer in answers if not answer[0]}
        assert traced.sample("taxgate_requests_total", route="chat", model="sim-traced", status="200") == 6
        warnings = [r for r in caplog.records if r.name == "taxgate.tracing"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per interval
        assert "requests are not affected" in warnings[0].getMessage()
    finally:
        if collector is not None:
            collector.stop()


def _requests_counted(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taxgate_requests_total{") and 'route="chat"' in line
    )


async def test_each_worker_exports_and_traces_count_what_metrics_count(tmp_path, sim):
    """`taxgate serve --workers 2` configured by the standard variables alone."""
    receiver = OtlpReceiver().start()
    port = free_port()
    config = tmp_path / "taxgate.yaml"
    config.write_text(f"upstreams: [{sim.base_url}]\nport: {port}\naudit: {{path: {tmp_path / 'audit.db'}}}\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
        "OTEL_SERVICE_NAME": "taxgate-workers",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
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
        wait_http(base + "/ready", 60, proc=gateway, log_path=tmp_path / "gateway.log")
        workers = subprocess.run(["pgrep", "-P", str(gateway.pid)], capture_output=True, text=True).stdout.split()
        body = {"model": "sim-traced", "max_tokens": 8, "messages": PROMPT}
        for index in range(20):  # a new connection each time: the kernel spreads them
            with httpx.Client(timeout=30) as client:
                response = client.post(base + "/v1/chat/completions", json={**body, "stream": index % 2 == 0})
                assert response.status_code == 200

        def servers() -> list:
            return [s for s in receiver.spans() if s.service == "taxgate-workers" and s.kind == "server"]

        await wait_until(lambda: len(servers()) >= 20, timeout_s=30, what="a SERVER span per request")
        assert len(servers()) == _requests_counted(base) == 20
        # Each span says which worker process sent it.
        assert {span.instance.rsplit("-", 1)[1] for span in servers()} <= set(workers)
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            assert gateway.wait(30) == 0
        finally:
            if gateway.poll() is None:
                gateway.kill()
            log.close()
            receiver.stop()
