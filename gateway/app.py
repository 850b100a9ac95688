"""The ASGI app, built by a factory from one settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit.event import event_from_decision
from gateway.audit.store import AuditStore
from gateway.auth import ApiKeyAuth
from gateway.client_timeouts import BodyTimeout
from gateway.drain import DrainMiddleware, StreamDrain
from gateway.endpoints import ENDPOINTS, Endpoint, by_path
from gateway.errors import GatewayError, MethodNotAllowed, NotFound, error_response
from gateway.http1 import Http1Client
from gateway.listeners import ListenerSplit
from gateway.metrics import GatewayMetrics
from gateway.proxy import Proxy
from gateway.request_id import RequestId
from gateway.settings import Settings
from gateway.upstream import HttpxTransport, UpstreamPool
from monitors.base import MonitorLoadError
from monitors.pipeline import Decision, MonitorPipeline
from monitors.registry import MonitorRegistry

if TYPE_CHECKING:
    from gateway.tracing.tracer import Tracing

log = logging.getLogger("taxgate")


def create_app(
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    registry: CollectorRegistry | None = None,
    monitor_registry: MonitorRegistry | None = None,
    clock: Callable[[], float] = time.perf_counter,
    metrics_dir: str | None = None,
    span_exporter: Any = None,
) -> FastAPI:
    """Build the gateway. ``client`` (e.g. over ``httpx.MockTransport``), ``registry`` and
    ``span_exporter`` (an OpenTelemetry ``SpanExporter`` in place of OTLP, when tracing is
    on) are injectable; shared objects are created in the lifespan, nothing at import."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = GatewayMetrics(registry)
    drain = StreamDrain()  # the server ends open streams through it at shutdown

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = (
            HttpxTransport(client)
            if client is not None
            else Http1Client(max_connections=settings.max_connections, keepalive_s=settings.keepalive_s)
        )
        audit = AuditStore(
            settings.audit,
            on_written=metrics.audit_events.inc,
            on_dropped=lambda count, _reason: metrics.audit_dropped.inc(count),
        )
        if settings.audit.enabled:
            await audit.start()
        tracing = _tracing(settings, metrics, span_exporter)
        pipeline = MonitorPipeline(
            settings.monitors,
            metrics=metrics.monitors,
            registry=monitor_registry,
            budgets=settings.budgets,
            on_event=_audit_sink(audit, settings),
            observer=tracing,
        )
        pool = UpstreamPool(settings, http, metrics, clock=clock)
        try:
            await _start(app, pipeline, pool)
            sync_audit = settings.audit.enabled and settings.audit.sync == "always"
            app.state.pool = pool
            app.state.proxy = Proxy(
                settings,
                pool,
                pipeline,
                metrics,
                audit_flush=audit.flush if sync_audit else None,
                clock=clock,
                drain=drain,
                tracing=tracing,
            )
            yield
        finally:
            try:
                await pool.close()
                await pipeline.close()  # waits for shadow checks, whose verdicts are audited
            finally:
                # Whatever failed above, queued audit events are still written.
                if settings.audit.enabled:
                    await audit.close()
                await http.aclose()
                await _end_tracing(tracing)

    # No slash redirects: a 307 would build its Location from the client's Host header.
    app = FastAPI(
        title="taxgate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    app.state.metrics = metrics
    app.state.drain = drain
    app.state.startup_error = None
    for endpoint in ENDPOINTS.values():
        app.add_route(endpoint.path, _completion_route(endpoint), methods=["POST"])
    app.add_route("/v1/models", _models, methods=["GET"])
    app.add_route("/health", _health, methods=["GET"])
    app.add_route("/ready", _ready, methods=["GET"])
    app.add_route("/metrics", _prometheus(registry, metrics_dir), methods=["GET"])
    app.add_exception_handler(HTTPException, _http_error(metrics))
    _add_middleware(app, settings, metrics, drain)
    return app


async def _start(app: FastAPI, pipeline: MonitorPipeline, pool: UpstreamPool) -> None:
    try:
        await pipeline.start()
    except MonitorLoadError as exc:
        app.state.startup_error = exc  # for the CLI's last word: what to fix
        raise
    await pool.start()


def _completion_route(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        return await request.app.state.proxy.handle(request, endpoint)

    return route


async def _models(request: Request) -> Response:
    body = {"object": "list", "data": request.app.state.pool.models()}
    return Response(orjson.dumps(body), media_type="application/json")


async def _health(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _ready(request: Request) -> Response:
    pool: UpstreamPool = request.app.state.pool
    upstreams = {
        r.url: {"healthy": r.healthy, "models": len(r.models), "outstanding": r.outstanding} for r in pool.replicas
    }
    status = 200 if pool.ready else 503
    return Response(
        orjson.dumps({"ready": pool.ready, "upstreams": upstreams}), status_code=status, media_type="application/json"
    )


def _prometheus(registry: CollectorRegistry, metrics_dir: str | None) -> Callable[[Request], Awaitable[Response]]:
    async def prometheus(_request: Request) -> Response:
        if metrics_dir is None:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        # Several workers (gateway.workers): every worker's values, summed.
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=metrics_dir)
        return Response(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)

    return prometheus


def _http_error(metrics: GatewayMetrics) -> Callable[[Request, HTTPException], Awaitable[Response]]:
    served = ", ".join(endpoint.path for endpoint in ENDPOINTS.values())

    async def http_error(request: Request, exc: HTTPException) -> Response:
        # The router raises these two only: an unknown path, or a known one and another method.
        if exc.status_code == 404:
            error: GatewayError = NotFound(
                f"no route {request.method} {request.url.path}; the gateway serves {served} and /v1/models"
            )
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.method} {request.url.path}: {exc.detail}")
        else:
            error = GatewayError(f"{request.method} {request.url.path}: {exc.detail}")
        metrics.requests.labels("other", "unknown", str(error.status)).inc()
        return error_response(error)

    return http_error


def _add_middleware(app: FastAPI, settings: Settings, metrics: GatewayMetrics, drain: StreamDrain) -> None:
    # Added last runs first: a request on the wrong listener is refused before anything
    # but its request id, and an API key is asked for before the body is read.
    routes = {path: endpoint.name for path, endpoint in by_path().items()}

    app.add_middleware(BodyTimeout, timeout_s=settings.timeouts.client_body_s)
    if settings.api_keys:
        # vLLM asks for its key on /v1/models too; /health never asks.
        keyed = {*routes, "/v1/models", *(("/ready", "/metrics") if settings.metrics.auth else ())}
        app.add_middleware(
            ApiKeyAuth,
            keys=[key.get_secret_value() for key in settings.api_keys],
            protected={
                route.path: route.methods
                for route in app.router.routes
                if isinstance(route, Route) and route.path in keyed
            },
            on_refused=lambda path: metrics.requests.labels(routes.get(path, "other"), "unknown", "401").inc(),
        )
    # The completion routes count their own stopped requests (Proxy.handle).
    app.add_middleware(
        DrainMiddleware,
        drain=drain,
        on_stopped=lambda path: None if path in routes else metrics.requests.labels("other", "unknown", "503").inc(),
    )
    if settings.metrics.address is not None:
        app.add_middleware(
            ListenerSplit,
            ops_port=settings.metrics.address[1],
            on_refused=metrics.requests.labels("other", "unknown", "404").inc,
        )
    app.add_middleware(RequestId)


def _tracing(settings: Settings, metrics: GatewayMetrics, exporter: Any) -> Tracing | None:
    if not settings.tracing.enabled:
        return None  # the SDK is not even imported
    from gateway.tracing.tracer import Tracing

    return Tracing(
        settings.tracing,
        on_exported=metrics.trace_spans_exported.inc,
        on_failed=metrics.trace_spans_failed.inc,
        exporter=exporter,
    )


async def _end_tracing(tracing: Tracing | None) -> None:
    if tracing is not None:
        # The last spans leave, bounded by the export timeout, off the loop.
        await asyncio.to_thread(tracing.shutdown)


def _audit_sink(audit: AuditStore, settings: Settings) -> Callable[[Decision, str], None] | None:
    if not settings.audit.enabled:
        return None

    def record(decision: Decision, request_id: str) -> None:
        audit.record(event_from_decision(decision, request_id, ts=time.time(), replica=audit.replica))

    return record
