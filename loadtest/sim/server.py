"""The simulated vLLM OpenAI server: routes, app factory and lifespan.

Route handlers only parse, check the model and hand a generation to a response
object; timing lives in the engine and the wire format in ``protocol``/``sse``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from loadtest.datasets import load_dataset
from loadtest.sim.classify_engine import ClassifyEngine, classify_body, parse_classify, text_tokens
from loadtest.sim.engine import SimEngine
from loadtest.sim.faults import FAULT_KINDS, Fault, FaultPlan
from loadtest.sim.metrics import SimCollector
from loadtest.sim.output import CorpusSource, EchoSource, OutputSource, RandomSource
from loadtest.sim.protocol import (
    SYSTEM_FINGERPRINT,
    GenerationRequest,
    RequestError,
    detokenize_body,
    error_body,
    models_body,
    parse_chat,
    parse_completion,
    parse_detokenize,
    parse_tokenize,
    request_id,
    resolve_max_tokens,
    tokenize_body,
)
from loadtest.sim.responses import (
    ResponsesStream,
    ResponsesWhole,
    StreamedGeneration,
    WholeGeneration,
)
from loadtest.sim.responses_api import EventEncoder, parse_responses, response_id
from loadtest.sim.settings import SimSettings
from loadtest.sim.sse import ChunkEncoder

logger = logging.getLogger(__name__)


def build_output_source(settings: SimSettings, rng: random.Random) -> OutputSource:
    if settings.output_mode == "echo":
        return EchoSource()
    if settings.output_mode == "random":
        return RandomSource(rng)
    return CorpusSource([item.text for item in load_dataset(settings.corpus_path)], rng)


def error_response(error: RequestError) -> Response:
    return Response(error_body(error), status_code=error.status, media_type="application/json")


class SimService:
    """The request handlers, bound to one engine and output source."""

    def __init__(
        self,
        settings: SimSettings,
        engine: SimEngine,
        source: OutputSource,
        faults: FaultPlan | None = None,
        on_fault: Callable[[str], None] | None = None,
        classifier: ClassifyEngine | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.classifier = classifier
        self.source = source
        self.faults = faults
        self.on_fault = on_fault
        self.started = int(time.time())

    async def chat_completions(self, request: Request) -> ASGIApp:
        return await self._generate(request, parse_chat)

    async def completions(self, request: Request) -> ASGIApp:
        return await self._generate(request, parse_completion)

    async def _generate(self, request: Request, parse: Callable[[bytes], GenerationRequest]) -> ASGIApp:
        settings = self.settings
        try:
            req = parse(await request.body())
            self._check_model(req.model)
            max_tokens = resolve_max_tokens(req, settings.max_model_len)
        except RequestError as error:
            return error_response(error)
        output = self.source.generate(req.echo_text, max_tokens, req.ignore_eos)
        gen = self.engine.submit(req.prompt_tokens, output, stream=req.stream)
        fault = self._draw_fault(len(output.tokens))
        rid = request_id(req.kind)
        created = int(time.time())
        if req.stream:
            encoder = ChunkEncoder(
                req.kind,
                rid,
                created,
                settings.model,
                prompt_tokens=req.prompt_tokens,
                include_usage=req.include_usage,
                continuous_usage=req.continuous_usage,
                system_fingerprint=SYSTEM_FINGERPRINT,
            )
            # Starlette calls whatever ASGI callable an endpoint returns, so these
            # stand in for Response objects.
            return StreamedGeneration(self.engine, gen, encoder, req.include_usage, fault)
        return WholeGeneration(self.engine, gen, req.kind, rid, created, settings.model, fault)

    async def responses(self, request: Request) -> ASGIApp:
        try:
            req = parse_responses(await request.body())
            self._check_model(req.model)
            max_tokens = resolve_max_tokens(req, self.settings.max_model_len)
        except RequestError as error:
            return error_response(error)
        output = self.source.generate(req.echo_text, max_tokens, req.ignore_eos)
        gen = self.engine.submit(req.prompt_tokens, output, stream=req.stream)
        fault = self._draw_fault(len(output.tokens))
        rid = response_id()
        if req.stream:
            return ResponsesStream(self.engine, gen, EventEncoder(rid, self.settings.model, req.prompt_tokens), fault)
        return ResponsesWhole(self.engine, gen, rid, self.settings.model, fault)

    def _draw_fault(self, max_chunks: int) -> Fault | None:
        fault = self.faults.draw(max_chunks) if self.faults is not None else None
        if fault is not None and self.on_fault is not None:
            self.on_fault(fault.kind)
        return fault

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.settings.model:
            raise RequestError(
                404,
                f"The model `{model}` does not exist. Valid aliases: {self.settings.model}.",
                err_type="NotFoundError",
                param="model",
            )

    async def tokenize(self, request: Request) -> Response:
        try:
            model, tokens = parse_tokenize(await request.body())
            self._check_model(model)
        except RequestError as error:
            return error_response(error)
        return Response(tokenize_body(tokens, self.settings.max_model_len), media_type="application/json")

    async def detokenize(self, request: Request) -> Response:
        try:
            model, text = parse_detokenize(await request.body())
            self._check_model(model)
        except RequestError as error:
            return error_response(error)
        return Response(detokenize_body(text), media_type="application/json")

    async def models(self, request: Request) -> Response:
        settings = self.settings
        return Response(
            models_body(
                settings.model,
                self.started,
                settings.max_model_len,
                ((settings.classifier_model, settings.classifier_max_len),),
            ),
            media_type="application/json",
        )

    async def classify(self, request: Request) -> Response:
        """vLLM's pooling ``/classify``, served by the simulated guard classifier."""
        settings = self.settings
        try:
            req = parse_classify(await request.body())
            if req.model is not None and req.model != settings.classifier_model:
                raise RequestError(
                    404,
                    f"The model `{req.model}` does not exist. Valid aliases: {settings.classifier_model}.",
                    err_type="NotFoundError",
                    param="model",
                )
            tokens = text_tokens(req.texts, settings.classifier_max_len)
        except RequestError as error:
            return error_response(error)
        assert self.classifier is not None  # built in the lifespan, with the engine
        await self.classifier.classify(len(req.texts), tokens)
        return Response(
            classify_body(settings.classifier_model, req.texts, tokens, req.use_activation),
            media_type="application/json",
        )


def _service(request: Request) -> SimService:
    return request.app.state.service


async def chat_completions(request: Request) -> ASGIApp:
    return await _service(request).chat_completions(request)


async def completions(request: Request) -> ASGIApp:
    return await _service(request).completions(request)


async def responses(request: Request) -> ASGIApp:
    return await _service(request).responses(request)


async def models(request: Request) -> Response:
    return await _service(request).models(request)


async def tokenize(request: Request) -> Response:
    return await _service(request).tokenize(request)


async def classify(request: Request) -> Response:
    return await _service(request).classify(request)


async def detokenize(request: Request) -> Response:
    return await _service(request).detokenize(request)


async def health(request: Request) -> Response:
    return Response(status_code=200)


async def http_error(request: Request, exc: Exception) -> Response:
    # vLLM answers unknown routes and wrong methods with FastAPI's plain shape, not the
    # OpenAI error shape; a simulator should not be nicer than the real thing.
    assert isinstance(exc, HTTPException)
    return Response(
        orjson.dumps({"detail": exc.detail}),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


def _log_engine_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("simulated engine stopped", exc_info=task.exception())


def create_sim_app(settings: SimSettings, registry: CollectorRegistry | None = None) -> Starlette:
    """Build the simulator app; its engine starts and stops with the ASGI lifespan.

    ``registry`` receives the vLLM-named metrics (a fresh one when not given).
    """
    registry = registry if registry is not None else CollectorRegistry()
    injected = Counter(
        "sim_injected_faults", "Answers that failed on purpose (--fault-*), by kind.", ["kind"], registry=registry
    )
    for kind in FAULT_KINDS:
        injected.labels(kind)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Separate seeded streams: the timing draws never shift what random mode says.
        engine = SimEngine(settings.latency_profile(), random.Random(f"{settings.seed}:timing"))
        source = build_output_source(settings, random.Random(f"{settings.seed}:output"))
        collector = SimCollector(engine, settings.model)
        registry.register(collector)
        faults = FaultPlan(settings.faults, random.Random(f"{settings.seed}:faults"))
        classifier = ClassifyEngine(settings.classifier(), random.Random(f"{settings.seed}:classify"))
        app.state.service = SimService(
            settings, engine, source, faults, on_fault=lambda kind: injected.labels(kind).inc(), classifier=classifier
        )
        tasks = [
            asyncio.create_task(engine.run(), name="sim-engine"),
            asyncio.create_task(classifier.run(), name="sim-classifier"),
        ]
        for task in tasks:
            task.add_done_callback(_log_engine_exit)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            registry.unregister(collector)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/classify", classify, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
