"""The upstream pool: vLLM replicas behind one pooled keep-alive HTTP client.

Least-outstanding-requests balancing, health probes with ejection, and a retry on
another replica only when the connection failed (nothing was sent, so nothing
can be duplicated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson

from gateway.errors import Overloaded, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.http1 import Http1Client
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

log = logging.getLogger("taxgate.upstream")

# The replica did not take the connection. (A PoolTimeout is the gateway's own pool being
# full: no fault of the replica, so it must not count towards ejecting it.)
_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(slots=True)
class Replica:
    url: str
    outstanding: int = 0
    healthy: bool = True
    failures: int = 0
    models: list[dict] = field(default_factory=list)

    def serves(self, model: str) -> bool:
        return any(entry.get("id") == model for entry in self.models)


class UpstreamCall:
    """An open upstream response; ``aclose()`` frees the replica slot and the connection."""

    __slots__ = ("replica", "response", "sent_at", "_pool", "_closed")

    def __init__(self, pool: UpstreamPool, replica: Replica, response: httpx.Response, sent_at: float) -> None:
        self._pool = pool
        self.replica = replica
        self.response = response
        self.sent_at = sent_at
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.replica.outstanding -= 1
        # Closing an unfinished stream drops the connection: vLLM sees the
        # disconnect and aborts the request, freeing its KV cache.
        await self.response.aclose()


class HttpxTransport:
    """An injected ``httpx.AsyncClient`` (tests: over ``httpx.MockTransport``) behind the
    interface of ``gateway.http1.Http1Client``, the transport the gateway runs on."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout,
    ) -> httpx.Response:
        request = self._client.build_request(method, url, content=content, headers=headers, timeout=timeout)
        return await self._client.send(request, stream=True)

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        response = await self._client.get(url, timeout=timeout)
        return response.status_code, response.content

    async def aclose(self) -> None:
        return None  # the injected client is its owner's to close


class UpstreamPool:
    def __init__(
        self,
        settings: Settings,
        client: Http1Client | HttpxTransport,
        metrics: GatewayMetrics,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._settings = settings
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self.replicas = [Replica(url) for url in settings.upstreams]
        timeouts = settings.timeouts
        self._stream_timeout = httpx.Timeout(
            connect=timeouts.connect_s, read=timeouts.idle_s, write=timeouts.idle_s, pool=timeouts.connect_s
        )
        self._whole_timeout = httpx.Timeout(
            connect=timeouts.connect_s, read=timeouts.first_byte_s, write=timeouts.idle_s, pool=timeouts.connect_s
        )
        self._health_task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.probe_all()
        self._health_task = asyncio.create_task(self._health_loop(), name="upstream-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)

    # -- health -----------------------------------------------------------------
    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe(replica) for replica in self.replicas))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health.interval_s)
            await self.probe_all()

    async def _probe(self, replica: Replica) -> None:
        """``GET /v1/models`` proves the API answers and refreshes the model list."""
        try:
            status, body = await self._client.get(f"{replica.url}/v1/models", timeout=self._settings.timeouts.connect_s)
            if status != 200:
                raise ValueError(f"status {status}")
            replica.models = list(orjson.loads(body).get("data", []))
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError, ValueError, TypeError) as exc:
            self._record_failure(replica, f"health probe failed: {type(exc).__name__}")
            return
        self._record_success(replica)

    def _record_failure(self, replica: Replica, reason: str) -> None:
        replica.failures += 1
        if replica.healthy and replica.failures >= self._settings.health.eject_after:
            replica.healthy = False
            log.warning("upstream %s ejected after %d failures (%s)", replica.url, replica.failures, reason)
        self._metrics.upstream_healthy.labels(replica.url).set(1 if replica.healthy else 0)

    def _record_success(self, replica: Replica) -> None:
        if not replica.healthy:
            log.info("upstream %s is healthy again", replica.url)
        replica.failures = 0
        replica.healthy = True
        self._metrics.upstream_healthy.labels(replica.url).set(1)

    @property
    def ready(self) -> bool:
        return any(replica.healthy and replica.models for replica in self.replicas)

    # -- models -----------------------------------------------------------------
    def models(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for replica in self.replicas:
            for entry in replica.models:
                seen.setdefault(entry.get("id"), entry)
        return list(seen.values())

    def knows_model(self, model: str) -> bool | None:
        """True/False from the replicas' model lists; None when no list is known yet."""
        if not any(replica.models for replica in self.replicas):
            return None
        return any(replica.serves(model) for replica in self.replicas)

    # -- requests -----------------------------------------------------------------
    def pick(self, model: str | None, exclude: set[str]) -> Replica | None:
        candidates = [
            r for r in self.replicas if r.url not in exclude and (model is None or not r.models or r.serves(model))
        ]
        healthy = [r for r in candidates if r.healthy]
        # With every candidate ejected, still try one: better a fast 502 than refusing
        # traffic when the health view is stale.
        pool = healthy or candidates
        if not pool:
            return None
        return min(pool, key=lambda r: r.outstanding)

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, model: str | None, stream: bool
    ) -> UpstreamCall:
        """Send the request; return the open response (its body is not read yet)."""
        tried: set[str] = set()
        timeout = self._stream_timeout if stream else self._whole_timeout
        last_error: Exception | None = None
        for _attempt in range(1 + self._settings.connect_retries):
            replica = self.pick(model, tried)
            if replica is None:
                break
            tried.add(replica.url)
            replica.outstanding += 1
            sent_at = self._clock()
            try:
                response = await self._client.request(
                    "POST", replica.url + path, content=body, headers=headers, timeout=timeout
                )
            except _CONNECT_FAILURES as exc:
                replica.outstanding -= 1
                last_error = exc
                self._metrics.upstream_errors.labels(replica.url, "connect").inc()
                self._record_failure(replica, f"connect failed: {type(exc).__name__}")
                continue
            except httpx.PoolTimeout as exc:
                replica.outstanding -= 1
                raise Overloaded(
                    f"all {self._settings.max_connections} upstream connections "
                    "are busy (max_connections); retry later",
                    retry_after_s=1,
                ) from exc
            except httpx.TimeoutException as exc:
                replica.outstanding -= 1
                self._metrics.upstream_errors.labels(replica.url, "timeout").inc()
                raise UpstreamTimeout(f"upstream {replica.url} did not answer within {timeout.read:g} s") from exc
            except httpx.TransportError as exc:
                replica.outstanding -= 1
                self._metrics.upstream_errors.labels(replica.url, "protocol").inc()
                raise UpstreamError(f"upstream {replica.url} failed: {type(exc).__name__}: {exc}") from exc
            except asyncio.CancelledError:
                replica.outstanding -= 1
                raise
            self._record_success(replica)
            return UpstreamCall(self, replica, response, sent_at)
        if last_error is not None:
            raise UpstreamError(
                f"cannot connect to any upstream ({len(tried)} tried): {type(last_error).__name__}: {last_error}"
            ) from last_error
        raise UpstreamUnavailable("no upstream serves this model right now", retry_after_s=5)
