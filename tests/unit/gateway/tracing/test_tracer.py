"""Spans of real requests through the app (upstream: httpx.MockTransport; spans: the SDK's
in-memory exporter in place of OTLP), and the counted export."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading

import httpx
import orjson
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.audit.query import query_events
from gateway.context import RequestContext
from gateway.settings import Settings
from gateway.tracing.export import CountingExporter
from gateway.tracing.settings import TracingSettings
from gateway.tracing.tracer import Tracing
from monitors.base import AsyncMonitor, Finding
from monitors.registry import MonitorRegistry
from tests.unit.gateway.test_proxy import COMPLETION, UPSTREAM, serving, sse

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TRACING = {"endpoint": "http://collector.test:4318", "schedule_delay_ms": 10}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "mail me at jane@example.com"}]}


@contextlib.asynccontextmanager
async def gateway(handler, tmp_path, exporter, monitor_registry=None, **overrides):
    settings = Settings.model_validate(
        {"upstreams": [UPSTREAM], "tracing": TRACING, "audit": {"path": str(tmp_path / "a.db")}, **overrides}
    )
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    app = create_app(
        settings,
        client=upstream,
        registry=CollectorRegistry(),
        span_exporter=exporter,
        monitor_registry=monitor_registry,
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            client.registry = app.state.metrics.registry
            yield client
    await upstream.aclose()  # the lifespan's end flushed every span to ``exporter``


def by_name(exporter: InMemorySpanExporter) -> dict:
    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


async def test_a_request_continues_the_clients_trace_down_to_the_upstream(tmp_path):
    exporter = InMemorySpanExporter()
    upstream_headers = []

    def chat(request):
        upstream_headers.append(request.headers)
        return httpx.Response(200, json=COMPLETION)

    monitors = [{"name": "pii", "stages": ["input"], "action": "redact"}]
    async with gateway(serving(chat), tmp_path, exporter, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = by_name(exporter)
    assert set(spans) == {"POST /v1/chat/completions", "chat m", "monitor pii input"}
    server, upstream, monitor = (spans["POST /v1/chat/completions"], spans["chat m"], spans["monitor pii input"])
    assert server.kind is SpanKind.SERVER and upstream.kind is SpanKind.CLIENT
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN and server.parent.is_remote
    assert upstream.parent.span_id == server.context.span_id
    assert monitor.parent.span_id == server.context.span_id
    # vLLM is handed the CLIENT span as its parent.
    [headers] = upstream_headers
    assert headers["traceparent"] == f"00-{CLIENT_TRACE}-{format(upstream.context.span_id, '016x')}-01"
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert (server.attributes["gen_ai.request.model"], server.attributes["gen_ai.response.model"]) == ("m", "m")
    assert (server.attributes["gen_ai.usage.input_tokens"], server.attributes["gen_ai.usage.output_tokens"]) == (3, 1)
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert server.attributes["http.response.status_code"] == 200
    assert upstream.attributes["server.address"] == "upstream.test"
    assert [event.name for event in upstream.events] == ["first byte"]
    assert server.start_time <= upstream.start_time <= upstream.end_time <= server.end_time
    assert server.start_time <= monitor.start_time <= monitor.end_time <= upstream.start_time
    assert (
        monitor.attributes["taxgate.monitor.action"],
        monitor.attributes["taxgate.monitor.checks"],
        monitor.attributes["taxgate.monitor.hits"],
    ) == ("redact", 1, 1)
    # The verdict's audit row leads to the trace.
    [event] = query_events(str(tmp_path / "a.db"))
    assert (event.trace_id, event.span_id) == (CLIENT_TRACE, format(server.context.span_id, "016x"))


async def test_a_stream_makes_one_span_per_monitor_and_stage_not_one_per_check(tmp_path):
    exporter = InMemorySpanExporter()
    words = [f"word{n} " for n in range(60)]
    stream = sse(*words)

    async def body():
        for line in stream.split(b"\n\n")[:-1]:
            yield line + b"\n\n"

    def chat(request):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    monitors = [
        {"name": "pii", "stages": ["input", "output"], "action": "redact"},
        {"name": "blocklist", "id": "words", "stages": ["output"], "keywords": ["nothing"]},
    ]
    async with gateway(serving(chat), tmp_path, exporter, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.text.endswith("data: [DONE]\n\n")
        registry = client.registry
    spans = by_name(exporter)
    assert set(spans) == {
        "POST /v1/chat/completions",
        "chat m",
        "monitor pii input",
        "monitor pii output",
        "monitor words output",
    }
    server = spans["POST /v1/chat/completions"]
    for name in ("monitor pii output", "monitor words output"):
        span = spans[name]
        assert span.parent.span_id == server.context.span_id
        assert span.attributes["taxgate.monitor.checks"] > 10, span.attributes  # folded, not a span each
        assert span.attributes["taxgate.monitor.action"] == "pass"
    # No usage in the stream: the text events sent stand in, as in the metrics.
    assert server.attributes["gen_ai.usage.output_tokens"] == registry.get_sample_value(
        "taxgate_completion_tokens_total", {"model": "m"}
    )
    assert "taxgate.phase.holdback_s" in server.attributes
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)  # as the client got it


async def test_an_unsampled_request_propagates_its_flag_and_records_nothing(tmp_path):
    exporter = InMemorySpanExporter()
    upstream_headers = []

    def chat(request):
        upstream_headers.append(request.headers)
        return httpx.Response(200, json=COMPLETION)

    monitors = [{"name": "pii", "stages": ["input"], "action": "redact"}]
    async with gateway(
        serving(chat), tmp_path, exporter, monitors=monitors, tracing={**TRACING, "sampler": "always_off"}
    ) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert exporter.get_finished_spans() == ()
    assert int(upstream_headers[0]["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0  # not sampled
    [event] = query_events(str(tmp_path / "a.db"))
    assert (event.trace_id, event.span_id) == ("", "")


async def test_tracing_off_sends_no_traceparent(tmp_path):
    upstream_headers = []

    def chat(request):
        upstream_headers.append(request.headers)
        return httpx.Response(200, json=COMPLETION)

    settings = Settings.model_validate({"upstreams": [UPSTREAM], "audit": {"path": str(tmp_path / "a.db")}})
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(serving(chat)))
    app = create_app(settings, client=upstream, registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            response = await client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
    await upstream.aclose()
    assert response.status_code == 200
    assert "traceparent" not in upstream_headers[0]


def test_a_gateway_without_tracing_never_imports_the_sdk():
    code = (
        "import sys\nfrom gateway.app import create_app\nfrom gateway.settings import load_settings\n"
        "create_app(load_settings(env={'TAXGATE_UPSTREAMS': 'http://x:1'}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class Refusing:
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("collector gone")
        return SpanExportResult.FAILURE

    def shutdown(self):
        pass


def test_failed_exports_are_counted_and_logged_once_per_interval(caplog):
    now = [0.0]
    failed, exported = [], []
    counting = CountingExporter(
        Refusing(),
        target="http://c:4318/v1/traces",
        on_exported=exported.append,
        on_failed=failed.append,
        log_interval_s=60,
        clock=lambda: now[0],
    )
    counting.reasons.message = "Failed to export span batch code: 503"
    with caplog.at_level(logging.WARNING, logger="taxgate.tracing"):
        assert counting.export([object()] * 3) is SpanExportResult.FAILURE
        now[0] = 30
        assert counting.export([object()] * 2) is SpanExportResult.FAILURE  # raised: still a result
        now[0] = 61
        counting.export([object()] * 4)
    assert failed == [3, 2, 4] and exported == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "taxgate.tracing"]
    assert len(warnings) == 2
    assert "3 spans" in warnings[0] and "code: 503" in warnings[0]
    assert "6 spans" in warnings[1] and "ConnectionError: collector gone" in warnings[1]


async def test_export_counts_reach_the_metrics(tmp_path):
    exporter = InMemorySpanExporter()
    async with gateway(serving(lambda request: httpx.Response(200, json=COMPLETION)), tmp_path, exporter) as client:
        await client.post("/v1/chat/completions", json=CHAT)
        registry = client.registry
    assert registry.get_sample_value("taxgate_trace_spans_exported_total") == 2  # server + client
    assert registry.get_sample_value("taxgate_trace_spans_failed_total") == 0
    assert orjson.loads(orjson.dumps(len(exporter.get_finished_spans()))) == 2


class Gated(AsyncMonitor):
    """Flags everything, once the test opens the gate: its verdict comes after the request."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate

    async def check(self, texts):
        await self.gate.wait()
        return [Finding(score=1.0) for _ in texts]


async def test_a_shadow_verdict_after_the_request_gets_its_own_span_in_the_trace(tmp_path):
    exporter = InMemorySpanExporter()
    gate = asyncio.Event()
    registry = MonitorRegistry.from_entry_points()
    registry.register("gated", lambda spec: Gated(gate))
    monitors = [{"name": "gated", "stages": ["input"], "action": "shadow"}]
    async with gateway(
        serving(lambda request: httpx.Response(200, json=COMPLETION)),
        tmp_path,
        exporter,
        monitor_registry=registry,
        monitors=monitors,
    ) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        gate.set()  # the request is answered; the shadow check ends now (close waits for it)
    spans = by_name(exporter)
    server, shadow = spans["POST /v1/chat/completions"], spans["monitor gated input"]
    assert shadow.parent.span_id == server.context.span_id
    assert shadow.context.trace_id == server.context.trace_id
    assert shadow.attributes["taxgate.monitor.after_request"] is True
    assert shadow.attributes["taxgate.monitor.action"] == "shadow"
    assert shadow.start_time < server.end_time <= shadow.end_time  # began in it, ended after


class Stuck:
    """A collector that never answers: export blocks until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans):
        self.entered.set()
        self.release.wait()
        return SpanExportResult.FAILURE

    def shutdown(self):
        self.release.set()

    def force_flush(self, timeout_millis=30000):
        return True


def test_shutdown_gives_up_on_a_collector_that_never_answers(caplog):
    stuck = Stuck()
    tracing = Tracing(
        TracingSettings(endpoint="http://c:4318", timeout_s=0.2, schedule_delay_ms=1),
        on_exported=lambda n: None,
        on_failed=lambda n: None,
        exporter=stuck,
    )
    ctx = RequestContext(request_id="rid", route="chat", started=1.0, model="m")
    tracing.start({}, route="chat", path="/v1/chat/completions", request_id="rid", started=1.0, now=1.0).finish(
        ctx, 1.5
    )
    assert stuck.entered.wait(10)  # the batch thread is stuck in the export
    with caplog.at_level(logging.WARNING, logger="taxgate.tracing"):
        tracing.shutdown()  # returns although the export never ends
    assert "did not finish within 0.2 s" in caplog.text
    stuck.release.set()


async def test_a_blocked_stream_reads_content_filter_and_the_monitor_span_says_block(tmp_path):
    exporter = InMemorySpanExporter()
    stream = sse("all ", "fine ", "until ", "forbidden ", "words")

    async def body():
        for line in stream.split(b"\n\n")[:-1]:
            yield line + b"\n\n"

    def chat(request):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    monitors = [{"name": "blocklist", "stages": ["output"], "keywords": ["forbidden"]}]
    async with gateway(serving(chat), tmp_path, exporter, monitors=monitors) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.text.endswith("data: [DONE]\n\n")
    spans = by_name(exporter)
    server, monitor = spans["POST /v1/chat/completions"], spans["monitor blocklist output"]
    assert server.attributes["gen_ai.response.finish_reasons"] == ("content_filter",)
    assert monitor.attributes["taxgate.monitor.action"] == "block"
    assert [event.name for event in monitor.events] == ["verdict"]
    assert monitor.events[0].attributes["action"] == "block"
