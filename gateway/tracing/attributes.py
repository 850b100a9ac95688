"""What the request and upstream spans say: OpenTelemetry's GenAI and HTTP semantic
conventions, read from the request's context when it ends. Pure."""

from __future__ import annotations

import re
from typing import Any, Protocol

import orjson

# A streamed answer's finish reasons, read from the bytes sent (a chunk's choice, or the
# Responses API's final event): no event is decoded for them.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([^"]+)"')
_RESPONSE_END = re.compile(rb'"type"\s*:\s*"response\.(completed|incomplete|failed)"')
_INCOMPLETE = re.compile(rb'"incomplete_details"\s*:\s*\{\s*"reason"\s*:\s*"([^"]+)"')

# gen_ai.operation.name per route (the Responses API is a chat exchange).
OPERATION = {"chat": "chat", "completions": "text_completion", "responses": "chat"}


class Finished(Protocol):
    """What the attributes read of a finished ``RequestContext``."""

    request_id: str
    route: str
    model: str
    status: int
    flags: list[str]
    phases: dict[str, float]
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: tuple[str, ...]
    upstream_sent: float | None
    upstream_first: float | None


def server_span_name(path: str) -> str:
    """``POST /v1/chat/completions``: ``{method} {http.route}``, as HTTP server spans are named."""
    return f"POST {path}"


def client_span_name(route: str, model: str) -> str:
    """``chat tiny-llm``: ``{gen_ai.operation.name} {gen_ai.request.model}``."""
    return f"{OPERATION.get(route, route)} {model}"


def request_start_attributes(route: str, path: str, request_id: str) -> dict[str, Any]:
    """Known when the request arrives (the sampler sees these)."""
    return {
        "http.request.method": "POST",
        "http.route": path,
        "url.path": path,
        "gen_ai.operation.name": OPERATION.get(route, route),
        "taxgate.request_id": request_id,
    }


def request_end_attributes(ctx: Finished) -> dict[str, Any]:
    """Known when the request ends: status, models, token usage, flags, gateway phases."""
    attributes: dict[str, Any] = {"http.response.status_code": ctx.status, "gen_ai.request.model": ctx.model}
    if ctx.status >= 500:
        attributes["error.type"] = str(ctx.status)
    attributes.update(_answered(ctx))
    if ctx.flags:
        attributes["taxgate.flags"] = list(ctx.flags)
    for phase, seconds in ctx.phases.items():
        attributes[f"taxgate.phase.{phase}_s"] = seconds
    return attributes


def _answered(ctx: Finished) -> dict[str, Any]:
    """What only an answered request has: the model that answered, usage, finish reasons."""
    if ctx.upstream_first is None:
        return {}
    # The upstream answers with the model asked for (vLLM echoes --served-model-name), and
    # the gateway routed by it: it is the response's model without decoding every chunk.
    attributes: dict[str, Any] = {"gen_ai.response.model": ctx.model}
    if ctx.prompt_tokens:
        attributes["gen_ai.usage.input_tokens"] = ctx.prompt_tokens
    if ctx.completion_tokens:
        attributes["gen_ai.usage.output_tokens"] = ctx.completion_tokens
    if ctx.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(ctx.finish_reasons)
    return attributes


def upstream_attributes(ctx: Finished, url: str | None, status: int | None) -> dict[str, Any]:
    """The CLIENT span of the upstream call; ``url`` and ``status`` once it answered."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": OPERATION.get(ctx.route, ctx.route),
        "gen_ai.request.model": ctx.model,
        "http.request.method": "POST",
    }
    if url is not None:
        host, _, port = url.split("://", 1)[-1].partition(":")
        attributes["server.address"] = host
        if port.isdigit():
            attributes["server.port"] = int(port)
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 400:
            attributes["error.type"] = str(status)
    if ctx.upstream_sent is not None and ctx.upstream_first is not None:
        attributes["taxgate.upstream.ttfb_s"] = ctx.upstream_first - ctx.upstream_sent
    return attributes


def finish_reasons(body: bytes) -> list[str]:
    """The finish reasons of a whole answer as the client gets it: each choice's
    ``finish_reason`` (chat, completions), or a Response's ``incomplete_details.reason``,
    else its ``status``. Empty for anything else."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(payload, dict):
        return []
    choices = payload.get("choices")
    if isinstance(choices, list):
        return [str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason")]
    details = payload.get("incomplete_details")
    if isinstance(details, dict) and details.get("reason"):
        return [str(details["reason"])]
    status = payload.get("status")
    return [status] if isinstance(status, str) else []


def stream_finish_reasons(data: bytes) -> list[str]:
    """The finish reasons in one write of a stream to the client, in order."""
    if b"finish_reason" in data:
        return [reason.decode() for reason in _FINISH.findall(data)]
    end = _RESPONSE_END.search(data) if b'"response.' in data else None
    if end is None:
        return []
    incomplete = _INCOMPLETE.search(data)
    return [(incomplete.group(1) if incomplete else end.group(1)).decode()]
