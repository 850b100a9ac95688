"""Calls to a serving engine (vLLM's pooling runner, an FMS detector): JSON over pooled
HTTP, and every way a call can fail turned into one error type that says which way.

An engine's answer is untrusted input. A refused or reset connection, a stall past
the call's timeout, a 4xx/5xx or a body that is not JSON all raise ``EngineError``;
the monitor's ``on_error`` then decides (the pipeline counts and logs it with the
request id). Messages name the fault and never quote a checked text.

The connections come from a ``Requester``: ``monitors.http1pool.Http1Pool`` in the
gateway (cheap per call), or ``HttpxRequester`` over any ``httpx.AsyncClient`` (tests
inject ``httpx.MockTransport`` through it).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson

from monitors.http1pool import Http1Pool

__all__ = ["Engine", "EngineError", "HttpxRequester", "Requester", "finite", "probability"]

# Bytes of an engine's error body quoted in the message: enough to recognise it.
_QUOTE_CHARS = 120


class EngineError(RuntimeError):
    """A call to the engine failed, or its answer has the wrong shape."""


class Requester(Protocol):
    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class HttpxRequester:
    """A ``Requester`` over an httpx client, its failures raised as the pool's are."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            response = await self._client.request(method, self._base + path, content=body or None, headers=headers)
        except httpx.TimeoutException as exc:
            raise TimeoutError(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise ConnectionError(type(exc).__name__) from exc
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


class Engine:
    """One engine's origin: JSON calls under a time limit, failures as EngineError."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        max_connections: int,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        origin, self._prefix = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._requester: Requester
        if transport is not None:
            self._requester = HttpxRequester(httpx.AsyncClient(transport=transport, headers=headers), origin)
        else:
            self._requester = Http1Pool(origin, max_connections=max_connections, headers=headers)

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """POST ``body`` as JSON; the decoded answer of a 2xx, else EngineError."""
        return await self._call("POST", path, orjson.dumps(body), headers)

    async def get(self, path: str) -> Any:
        return await self._call("GET", path, b"", None)

    async def _call(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> Any:
        where = self.base_url + path
        # The pipeline's timeout_ms bounds each check; this bounds a call that every check
        # waiting on it may have given up on, so a stalled engine never holds a connection long.
        try:
            async with asyncio.timeout(self._timeout_s):
                status, raw = await self._requester.request(method, self._prefix + path, body, headers)
        except TimeoutError as exc:
            raise EngineError(f"engine at {where} did not answer in {self._timeout_s:g} s") from exc
        except OSError as exc:  # refused, reset, closed mid-answer, not HTTP
            raise EngineError(f"engine at {where} unreachable: {type(exc).__name__}: {exc}") from exc
        if status >= 300:
            quoted = raw[:_QUOTE_CHARS].decode("utf-8", "replace")
            raise EngineError(f"engine at {where} answered HTTP {status}: {quoted!r}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        try:  # NaN and Infinity are not JSON, but Python servers write them: report them as such
            return json.loads(raw)
        except ValueError as exc:
            raise EngineError(f"engine at {where} answered a body that is not JSON") from exc

    async def aclose(self) -> None:
        await self._requester.aclose()


def probability(value: Any, where: str) -> float:
    """``value`` as a probability in [0, 1]; NaN, infinities, other types and numbers out of
    range are a wrong answer, never a score."""
    number = finite(value, where)
    if not 0.0 <= number <= 1.0:
        raise EngineError(f"{where}: {number!r} is not a probability")
    return number


def finite(value: Any, where: str) -> float:
    """``value`` as a finite number (a raw logit); anything else is a wrong answer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{where}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise EngineError(f"{where}: {number!r} is not a probability or a finite number")
    return number
