"""The completion routes: parse, input monitors, upstream, output monitors, reply.
(API keys and request ids are checked and made before, by ``gateway.auth`` and
``gateway.request_id``.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import httpx
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from gateway.answer import ProtocolViolation
from gateway.context import RequestContext
from gateway.detokenize import Detokenizer, pool_post
from gateway.drain import StreamDrain
from gateway.endpoints import Endpoint
from gateway.errors import (
    BadRequest,
    ContentBlocked,
    GatewayError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    UpstreamError,
    UpstreamStatus,
    error_response,
)
from gateway.metrics import GatewayMetrics
from gateway.monitored_relay import OutputGuard, note_flags, relay_monitored
from gateway.protocol import ParsedRequest, parse_body
from gateway.recorder import StreamRecorder
from gateway.relay import midstream_error, relay_raw
from gateway.settings import Settings
from gateway.stream_policy import stream_policy
from gateway.tracing.attributes import finish_reasons
from gateway.uncheckable import settle
from gateway.upstream import UpstreamCall, UpstreamPool
from monitors.pipeline import MonitorOverloaded, MonitorPipeline

if TYPE_CHECKING:
    from gateway.tracing.tracer import Tracing

log = logging.getLogger("taxgate.proxy")


async def _client_gone(request: Request) -> None:
    # The body was read already, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Proxy:
    def __init__(
        self,
        settings: Settings,
        pool: UpstreamPool,
        pipeline: MonitorPipeline,
        metrics: GatewayMetrics,
        *,
        audit_flush: Callable | None = None,
        clock: Callable[[], float] = time.perf_counter,
        drain: StreamDrain | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._tracing = tracing
        self._drain = drain if drain is not None else StreamDrain()
        self._pool = pool
        self._pipeline = pipeline
        self._metrics = metrics
        self._audit_flush = audit_flush
        self._clock = clock
        self._check_input = pipeline.has_stage("input")
        self._check_output = pipeline.has_stage("output")
        # Input no monitor can read is settled only when a monitor could act on it.
        self._enforce_input = pipeline.enforces("input")
        # Shadow-only output monitors never hold a stream's text back: they only watch.
        self._enforce_output = pipeline.enforces("output")
        self._detokenizer = Detokenizer(pool_post(pool, metrics))
        self._in_flight = 0

    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        ctx = RequestContext(request_id=request.state.request_id, route=endpoint.name, started=self._clock())
        if self._tracing is not None:
            ctx.trace = self._tracing.start(
                request.headers,
                route=endpoint.name,
                path=endpoint.path,
                request_id=ctx.request_id,
                started=ctx.started,
                now=self._clock(),
            )
        self._metrics.in_flight.inc()
        self._in_flight += 1
        try:
            limit = self._settings.max_in_flight
            if limit and self._in_flight > limit:
                raise Overloaded(
                    f"the gateway is at its limit of {limit} requests in flight (max_in_flight); retry later",
                    retry_after_s=1,
                )
            response = await self._serve(request, endpoint, ctx)
        except GatewayError as error:
            response = self._error(error, ctx)
        except MonitorOverloaded as exc:
            response = self._error(
                Overloaded(f"monitor {exc.monitor_id} is overloaded; retry later", retry_after_s=exc.retry_after_s), ctx
            )
        except ClientDisconnect:
            self._metrics.client_disconnects.labels(ctx.route).inc()
            ctx.status = 499
            response = Response(status_code=499)
        except asyncio.CancelledError:
            # The server cancelled the request (shutdown): the slot is freed and the
            # request counted here; DrainMiddleware sends its 503 answer.
            ctx.status = 503
            self._finish(ctx)
            raise
        except Exception:
            # A bug, not a client or upstream fault: say so in the OpenAI shape, log it
            # whole, and still release the in-flight slot.
            log.exception("request %s failed inside the gateway", ctx.request_id)
            response = self._error(
                GatewayError("internal gateway error; see the gateway log for this x-request-id"), ctx
            )
        if isinstance(response, StreamingResponse):
            return response  # the stream's own finally records the request
        self._finish(ctx)
        return response

    # -- the request path ---------------------------------------------------------------
    async def _serve(self, request: Request, endpoint: Endpoint, ctx: RequestContext) -> Response:
        raw = await self._read_body(request)
        parse_started = self._clock()
        parsed = parse_body(endpoint.name, endpoint.request_model, raw)
        ctx.model = parsed.model
        known = self._pool.knows_model(parsed.model)
        if known is False:
            ctx.model = "unknown"
            raise ModelNotFound(
                f"model {parsed.model!r} is not served here; GET /v1/models lists the models", param="model"
            )
        ctx.add_phase("parse", self._clock() - parse_started)
        if self._settings.log_prompts:
            log.info(
                "request %s model %s prompt %r",
                ctx.request_id,
                parsed.model,
                endpoint.read_input(parsed.body, check_tools=False).texts,
            )
        if self._check_input:
            raw = await self._input_monitors(endpoint, parsed, raw, ctx)
        headers = {"content-type": "application/json", "x-request-id": ctx.request_id}
        if ctx.trace is not None:
            ctx.trace.upstream(headers, ctx.route, ctx.model)  # vLLM's spans join the trace
        if not parsed.stream:
            return await self._unless_client_leaves(request, ctx, self._whole(endpoint, raw, headers, parsed, ctx))
        call = await self._open(endpoint, raw, headers, parsed, ctx)
        return self._stream(endpoint, call, ctx)

    async def _open(
        self, endpoint: Endpoint, raw: bytes, headers: dict[str, str], parsed: ParsedRequest, ctx: RequestContext
    ) -> UpstreamCall:
        """Send upstream; an upstream HTTP error is passed on as it is."""
        call = await self._pool.open(endpoint.path, raw, headers, model=parsed.model, stream=parsed.stream)
        ctx.upstream_sent = call.sent_at
        status = call.response.status_code
        if ctx.trace is not None:
            ctx.trace.answered(call.replica.url, status)
        content_type = call.response.headers.get("content-type", "")
        if status == 200 and (not parsed.stream or content_type.startswith("text/event-stream")):
            return call
        try:
            body = await call.response.aread()
        except httpx.HTTPError as exc:
            self._metrics.upstream_errors.labels(call.replica.url, "midstream").inc()
            raise midstream_error(exc, call.replica.url, self._settings.timeouts.idle_s) from exc
        finally:
            await call.aclose()
        if status == 200:
            # A streamed request answered with a whole body (HTML, JSON): not the
            # protocol, and nothing was sent to the client yet, so a plain 502.
            self._metrics.upstream_errors.labels(call.replica.url, "protocol").inc()
            raise UpstreamError(
                f"upstream {call.replica.url} answered a streamed request with "
                f"{content_type or 'no content type'}, not an event stream"
            )
        raise UpstreamStatus(status, body, content_type or "application/json")

    async def _unless_client_leaves(self, request: Request, ctx: RequestContext, work: Awaitable[Response]) -> Response:
        """Run ``work``, cancelling it when the client disconnects. A non-streamed request
        waits for vLLM's whole answer with no stream whose cancellation would notice the
        client leaving; cancelling closes the upstream request, so vLLM aborts it."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, gone, return_exceptions=True)
        if task.cancelled():
            self._metrics.client_disconnects.labels(ctx.route).inc()
            ctx.status = 499
            return Response(status_code=499)
        return task.result()

    async def _read_body(self, request: Request) -> bytes:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit (max_body_bytes)")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit (max_body_bytes)")
        if not body:
            raise BadRequest("request body is empty; send a JSON object")
        return bytes(body)

    async def _input_monitors(
        self, endpoint: Endpoint, parsed: ParsedRequest, raw: bytes, ctx: RequestContext
    ) -> bytes:
        view = endpoint.read_input(parsed.body, check_tools=self._settings.check_tools)
        if self._enforce_input and view.uncheckable:
            started = self._clock()

            async def detokenize(prompts):
                return await self._detokenizer.texts(prompts, model=parsed.model, request_id=ctx.request_id)

            await settle(view, self._settings.uncheckable_input, detokenize, self._metrics)
            if view.token_prompts:
                ctx.add_phase("detokenize", self._clock() - started)
        started = self._clock()
        result = await self._pipeline.check(
            "input", view.texts, request_id=ctx.request_id, context=ctx.monitor_context()
        )
        ctx.add_phase("input_monitors", self._clock() - started)
        note_flags(result, ctx)
        if result.blocked_by is not None:
            await self._flush_audit()
            raise ContentBlocked(
                f"the request was blocked by the {result.blocked_by.monitor_id} safety monitor",
                param=endpoint.input_param,
            )
        if result.redacted:
            return view.redacted_body(parsed.body, result.redactions)
        return raw

    # -- non-streamed -------------------------------------------------------------------
    async def _whole(
        self, endpoint: Endpoint, raw: bytes, headers: dict[str, str], parsed: ParsedRequest, ctx: RequestContext
    ) -> Response:
        call = await self._open(endpoint, raw, headers, parsed, ctx)
        try:
            body = await call.response.aread()
        except httpx.HTTPError as exc:
            self._metrics.upstream_errors.labels(call.replica.url, "midstream").inc()
            raise midstream_error(exc, call.replica.url, self._settings.timeouts.first_byte_s) from exc
        finally:
            await call.aclose()
        ctx.upstream_first = ctx.upstream_last = self._clock()
        output = endpoint.output
        try:
            answer = output.answer(body, texts=self._check_output)
        except (orjson.JSONDecodeError, ProtocolViolation) as exc:
            self._metrics.upstream_errors.labels(call.replica.url, "protocol").inc()
            raise UpstreamError(
                f"upstream {call.replica.url} answered a body that is not {output.noun} ({exc})"
            ) from None
        if answer.usage is not None:
            ctx.prompt_tokens, ctx.completion_tokens = answer.usage
        if answer.texts:
            # Every text of the answer (content, reasoning, tool calls, logprobs) checked;
            # a block replaces it with the refusal, a redaction masks it in place.
            started = self._clock()
            result = await self._pipeline.check(
                "output", answer.texts, request_id=ctx.request_id, kinds=answer.kinds, context=ctx.monitor_context()
            )
            ctx.add_phase("output_monitors", self._clock() - started)
            note_flags(result, ctx)
            body = answer.apply(result, self._settings.refusal_message) or body
        if ctx.trace is not None:
            ctx.finish_reasons = tuple(finish_reasons(body))
        return await self._reply(body, ctx)

    async def _reply(self, body: bytes, ctx: RequestContext) -> Response:
        await self._flush_audit()
        ctx.first_sent = ctx.last_sent = self._clock()
        headers = {"server-timing": ctx.server_timing(self._clock())}
        headers.update(ctx.verdict_headers())
        return Response(body, media_type="application/json", headers=headers)

    # -- streamed -----------------------------------------------------------------------
    def _stream(self, endpoint: Endpoint, call: UpstreamCall, ctx: RequestContext) -> StreamingResponse:
        labels = (ctx.route, ctx.model)
        errors = self._metrics.upstream_errors
        rec = StreamRecorder(
            ctx,
            self._metrics.itl.labels(*labels),
            lambda kind: errors.labels(call.replica.url, kind).inc(),
            self._clock,
        )
        idle_s = self._settings.timeouts.idle_s
        if self._check_output:
            guard = OutputGuard(
                self._pipeline.stage("output", request_id=ctx.request_id, context=ctx.monitor_context()), rec
            )
            policy = stream_policy(guard, self._settings.streaming, rec.clock, enforcing=self._enforce_output)
            dialect = endpoint.output.stream(ctx.verdict_fields, self._settings.refusal_message, rec.clock)
            body: AsyncIterator[bytes] = relay_monitored(
                call, rec, dialect, policy, guard, metrics=self._metrics, idle_s=idle_s
            )
        else:
            body = relay_raw(call, rec, idle_s, endpoint.raw)
        body = self._drain.guard(body, ctx)  # at shutdown: a shutting_down event, not a cut
        if ctx.trace is not None:
            body = ctx.trace.watched(body, ctx)  # the finish reasons sent
        headers = {"cache-control": "no-cache"}
        headers.update(ctx.verdict_headers())
        return StreamingResponse(self._tracked(body, ctx), media_type="text/event-stream", headers=headers)

    async def _tracked(self, body: AsyncIterator[bytes], ctx: RequestContext) -> AsyncIterator[bytes]:
        try:
            async for data in body:
                yield data
        except (asyncio.CancelledError, GeneratorExit):
            # The client left: closing ``body`` closes the upstream request. After the
            # last event it left a finished stream, which stays counted as it ended.
            if not ctx.delivered:
                self._metrics.client_disconnects.labels(ctx.route).inc()
                ctx.status = 499
            raise
        finally:
            await body.aclose()
            self._finish(ctx)

    # -- bookkeeping --------------------------------------------------------------------
    async def _flush_audit(self) -> None:
        if self._audit_flush is not None:
            await self._audit_flush()

    def _error(self, error: GatewayError, ctx: RequestContext) -> Response:
        ctx.status = error.status
        if error.status >= 500:
            log.warning("request %s: %s %s", ctx.request_id, error.status, error.message)
        return error_response(error)

    def _finish(self, ctx: RequestContext) -> None:
        metrics = self._metrics
        try:
            now = self._clock()
            if ctx.trace is not None:
                self._end_trace(ctx, now)
            for phase, seconds in ctx.phases.items():
                metrics.overhead.labels(phase).observe(seconds)
            if ctx.status == 200:
                self._observe_timings(ctx, now)
        finally:
            # Whatever the bookkeeping above met, the slot is freed and the request counted.
            metrics.in_flight.dec()
            self._in_flight -= 1
            # Counted last, so whoever sees the request counted also sees the rest of it.
            metrics.requests.labels(ctx.route, ctx.model, str(ctx.status)).inc()

    def _end_trace(self, ctx: RequestContext, now: float) -> None:
        try:
            ctx.trace.finish(ctx, now)
        except Exception:  # a tracing fault costs the trace, never the request
            log.exception("request %s: its trace could not be ended", ctx.request_id)

    def _observe_timings(self, ctx: RequestContext, now: float) -> None:
        metrics = self._metrics
        labels = (ctx.route, ctx.model)
        metrics.e2e.labels(*labels).observe(now - ctx.started)
        if ctx.first_sent is not None:
            metrics.ttft.labels(*labels).observe(ctx.first_sent - ctx.started)
        if ctx.upstream_sent is not None and ctx.upstream_first is not None:
            metrics.upstream_ttft.labels(*labels).observe(ctx.upstream_first - ctx.upstream_sent)
        if ctx.upstream_sent is not None and ctx.upstream_last is not None:
            metrics.upstream_e2e.labels(*labels).observe(ctx.upstream_last - ctx.upstream_sent)
        if ctx.prompt_tokens:
            metrics.prompt_tokens.labels(ctx.model).inc(ctx.prompt_tokens)
        if ctx.completion_tokens:
            metrics.completion_tokens.labels(ctx.model).inc(ctx.completion_tokens)
