"""Requests the bench sends itself (warm-up, safety pass, target probes), outside Locust.

The measured rounds run in Locust; these helpers are for traffic whose timing is
not reported, so one async client with many concurrent requests is enough: an
``httpx.AsyncClient``, or for the safety pass's thousands of requests to the bench's own
local gateways an ``Http1Session`` (the gateway's HTTP/1.1 client: httpx kept the bench's
process at a full core and set the pass's pace). Requests go over the run's route
(``routes``), as the rounds' do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import orjson

from gateway.http1 import Http1Client, Http1Response
from gateway.sse import SSEParser
from loadtest.bench.routes import CHAT, PATHS, request_body, whole_answer
from loadtest.bench.streamtiming import StreamTimer

FLAGS_HEADER = "x-taxgate-flags"
REDACTED_HEADER = "x-taxgate-redacted"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request came back with, as the safety pass needs to judge it."""

    status: int
    error_code: str = ""
    text: str = ""
    finish_reason: str | None = None
    flags: str = ""
    error: str | None = None
    redacted: str = ""  # x-taxgate-redacted: an input redaction never shows in the answer


def pool_limits(connections: int) -> httpx.Limits:
    """Keep every connection alive, and drop idle ones well before servers do.

    uvicorn closes a keep-alive connection after 5 s idle, httpx's default expiry is
    also 5 s: a request sent on a connection at that moment dies with a ReadError.
    """
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0)


@dataclass(frozen=True, slots=True)
class WholeResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes


class Http1Session:
    """What ``ask`` uses of ``httpx.AsyncClient`` (``post``, ``stream``), over the gateway's
    keep-alive HTTP/1.1 client: plain ``http://`` servers only, no auth, httpx's
    exception types on failure (so ``ask`` retries and reports alike)."""

    def __init__(self, connections: int, timeout_s: float) -> None:
        # Idle connections expire well before the server's keep-alive (uvicorn: 5 s).
        self._client = Http1Client(max_connections=connections, keepalive_s=2.0)
        self._timeout = httpx.Timeout(timeout_s)

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> WholeResponse:
        response = await self._client.request("POST", url, content=content, headers=headers, timeout=self._timeout)
        try:
            return WholeResponse(response.status_code, response.headers, await response.aread())
        finally:
            await response.aclose()

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, content: bytes, headers: dict[str, str]
    ) -> AsyncIterator[Http1Response]:
        response = await self._client.request(method, url, content=content, headers=headers, timeout=self._timeout)
        try:
            yield response
        finally:
            await response.aclose()

    async def __aenter__(self) -> Http1Session:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._client.aclose()


Client = httpx.AsyncClient | Http1Session

# A reused connection the server closed at the same instant fails before any byte of
# the request was read; such a request was not served and is safe to send again.
_RETRYABLE = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)


async def ask(client: Client, base_url: str, body: dict, route: str = CHAT) -> Outcome:
    """Send one request (streamed or not, as ``body`` says) and read it to the end."""
    for attempt in (1, 2):
        try:
            return await _ask_once(client, base_url + PATHS[route], body, route)
        except _RETRYABLE as exc:
            if attempt == 2:
                return Outcome(status=0, error=f"{type(exc).__name__} (after a retry): {exc}")
        except httpx.HTTPError as exc:
            return Outcome(status=0, error=f"{type(exc).__name__}: {exc}")
    raise AssertionError("unreachable: the second attempt returns")


async def _ask_once(client: Client, url: str, body: dict, route: str) -> Outcome:
    if body.get("stream"):
        return await _streamed(client, url, body, route)
    response = await client.post(url, content=orjson.dumps(body), headers={"content-type": "application/json"})
    flags = response.headers.get(FLAGS_HEADER, "")
    redacted = response.headers.get(REDACTED_HEADER, "")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return Outcome(response.status_code, flags=flags, error=f"HTTP {response.status_code}: body is not JSON")
    if response.status_code != 200:
        return _refusal(response.status_code, data, flags)
    text, finish_reason = whole_answer(route, data)
    return Outcome(200, text=text, finish_reason=finish_reason, flags=flags, redacted=redacted)


async def _streamed(client: Client, url: str, body: dict, route: str) -> Outcome:
    async with client.stream(
        "POST", url, content=orjson.dumps(body), headers={"content-type": "application/json"}
    ) as response:
        flags = response.headers.get(FLAGS_HEADER, "")
        redacted = response.headers.get(REDACTED_HEADER, "")
        if response.status_code != 200:
            raw = await response.aread()
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = {}
            return _refusal(response.status_code, data, flags)
        timer = StreamTimer(keep_text=True, route=route)
        t0 = time.perf_counter()
        # Events split at blank lines only: httpx's aiter_lines also breaks a line at
        # U+2028 and other Unicode line breaks, which JSON strings carry unescaped.
        parser = SSEParser()
        async for read in response.aiter_raw():
            for event in parser.feed(read):
                timer.feed(b"data: " + event.data, time.perf_counter() - t0)
        for event in parser.flush():
            timer.feed(b"data: " + event.data, time.perf_counter() - t0)
        result = timer.finish()
    error = None if result.blocked else result.error
    return Outcome(
        200, text=result.text, finish_reason=result.finish_reason, flags=flags, error=error, redacted=redacted
    )


def _refusal(status: int, data: dict, flags: str) -> Outcome:
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "")
    message = str(error.get("message") or "")
    return Outcome(
        status, error_code=code, flags=flags, error=f"HTTP {status}: {message or code or 'no error body'}"[:300]
    )


async def warm_up(
    base_urls: list[str],
    model: str,
    prompts: list[str],
    max_tokens: int,
    seconds: float,
    concurrency: int = 4,
    seed: int = 0,
    route: str = CHAT,
    auth: httpx.Auth | None = None,
) -> dict[str, int]:
    """Streamed requests to every URL for ``seconds`` (connection pools, caches, lazy model
    loads); returns how many failed per URL, so a broken scenario shows up before the rounds.
    """
    failures = {url: 0 for url in base_urls}
    if seconds <= 0 or not prompts:
        return failures
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    limits = pool_limits(concurrency * len(base_urls))
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits, auth=auth) as client:

        async def loop(url: str) -> None:
            while time.monotonic() < deadline:
                body = request_body(route, model, rng.choice(prompts), max_tokens, stream=True, ignore_eos=True)
                outcome = await ask(client, url, body, route)
                if outcome.status != 200 and outcome.error_code != "content_blocked":
                    failures[url] += 1
                    await asyncio.sleep(0.05)  # do not spin on an instant error

        await asyncio.gather(*(loop(url) for url in base_urls for _ in range(concurrency)))
    return failures
