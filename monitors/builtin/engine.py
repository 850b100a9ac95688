"""HTTP to a serving engine (vLLM's pooling runner, an FMS detector): one pooled client,
and every way a call can fail turned into one error type that says which way.

An engine's answer is untrusted input. A refused or reset connection, a stall past
the client's timeout, a 4xx/5xx or a body that is not JSON all raise ``EngineError``;
the monitor's ``on_error`` then decides (the pipeline counts and logs it with the
request id). Messages name the fault and never quote a checked text.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any

import httpx

__all__ = ["EngineError", "engine_client", "finite", "get_json", "post_json", "probability"]

# Bytes of an engine's error body quoted in the message: enough to recognise it.
_QUOTE_CHARS = 120


class EngineError(RuntimeError):
    """A call to the engine failed, or its answer has the wrong shape."""


def engine_client(*, timeout_s: float, max_connections: int, api_key: str | None = None,
                  headers: dict[str, str] | None = None,
                  transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A pooled keep-alive client. ``timeout_s`` is a backstop: the pipeline's ``timeout_ms``
    bounds each check, this bounds a call that every check waiting on it gave up on."""
    all_headers = dict(headers or {})
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
    return httpx.AsyncClient(
        headers=all_headers, timeout=httpx.Timeout(timeout_s), transport=transport,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


async def post_json(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> Any:
    """POST ``body``; the decoded JSON answer of a 2xx, else EngineError."""
    return await _call(client.post(url, json=body, headers=headers), url)


async def get_json(client: httpx.AsyncClient, url: str) -> Any:
    """GET ``url``; the decoded JSON answer of a 2xx, else EngineError."""
    return await _call(client.get(url), url)


async def _call(request: Awaitable[httpx.Response], url: str) -> Any:
    try:
        response = await request
    except httpx.TimeoutException as exc:
        raise EngineError(f"engine at {url} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:  # refused, reset, DNS, protocol
        raise EngineError(f"engine at {url} unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        raise EngineError(f"engine at {url} answered HTTP {response.status_code}: "
                          f"{response.text[:_QUOTE_CHARS]!r}")
    try:
        return response.json()
    except ValueError as exc:
        raise EngineError(f"engine at {url} answered a body that is not JSON") from exc


def probability(value: Any, where: str) -> float:
    """``value`` as a probability in [0, 1]; NaN, infinities, other types and numbers out of
    range are a wrong answer, never a score."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{where}: expected a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise EngineError(f"{where}: {number!r} is not a probability")
    return number


def finite(value: Any, where: str) -> float:
    """``value`` as a finite number (a raw logit); anything else is a wrong answer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{where}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise EngineError(f"{where}: {number!r} is not a finite number")
    return number
