"""A small keep-alive HTTP/1.1 client for the upstreams: the gateway's hot path.

Every token of every stream is read here, so it does the least per chunk: an asyncio
Protocol feeds httptools' C parser (chunked decoding included), decoded body bytes
queue up, and a reader takes everything buffered in one piece. Measured against
httpx on the same relay (docs/BENCHMARKS.md), httpx/httpcore spent most of the
gateway's CPU choosing a pooled connection (a readability check of every idle
connection per request) and in its per-chunk layers.

It speaks only what the upstreams need: one request per connection at a time,
``Content-Length`` request bodies, keep-alive reuse with an idle expiry, and a bound
on connections. Failures raise httpx's exception types (``ConnectError``,
``ConnectTimeout``, ``ReadTimeout``, ``RemoteProtocolError``, ``ReadError``,
``PoolTimeout``), so the one mapping from upstream faults to answers stays in
``gateway.upstream``. Tests inject an ``httpx.AsyncClient`` instead (see
``gateway.upstream.HttpxTransport``); the integration tests run this one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools
import httpx

# Reading pauses while this much decoded body waits for the client (backpressure).
_HIGH_WATER = 1 << 20


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it."""

    def __init__(self, origin: tuple[str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpResponseParser | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future | None = None
        self._error: Exception | None = None
        self.closed = False
        # The response under way.
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self.headers_done = False
        self.complete = False
        self.keep_alive = False

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes while idle: the server is not speaking HTTP to us
            self._fail(httpx.RemoteProtocolError("upstream sent data outside a response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("upstream asked for a protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if self._parser is not None and self.headers_done and exc is None:
                # A body that ends with the connection (no length, not chunked) ends here.
                try:
                    self._parser.feed_data(b"")
                except httptools.HttpParserError:
                    pass
            if not self.complete:
                self._error = self._error or httpx.ReadError(
                    "upstream closed the connection mid-response" + (f": {exc}" if exc else "")
                )
        self._wake()

    # -- httptools callbacks ------------------------------------------------------
    def on_status(self, _status: bytes) -> None:
        self.status = self._parser.get_status_code()  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self._parser.should_keep_alive()  # type: ignore[union-attr]
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- use ----------------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.headers_done = 0, {}, False
        self.complete = self.keep_alive = False
        self._chunks.clear()
        self._buffered = 0
        self.transport.write(head + body)  # type: ignore[union-attr]

    async def wait_headers(self, timeout: float) -> None:
        while not self.headers_done:
            await self._wait(timeout, "no response headers")

    async def read(self, timeout: float) -> bytes:
        """Everything buffered now (waiting up to ``timeout`` for something); b"" at the end."""
        while not self._chunks:
            if self.complete:
                return b""
            await self._wait(timeout, "no data")
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def _wait(self, timeout: float, what: str) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        handle = self._loop.call_later(timeout, self._timed_out, waiter, what, timeout)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _timed_out(self, waiter: asyncio.Future, what: str, timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout(f"{what} from upstream for {timeout:g} s"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.close()
        self._wake()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class Http1Response:
    """The part of ``httpx.Response`` the gateway uses."""

    __slots__ = ("status_code", "headers", "_conn", "_client", "_timeout", "_done")

    def __init__(self, client: Http1Client, conn: _Connection, timeout: httpx.Timeout) -> None:
        self.status_code = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._client = client
        self._timeout = timeout.read or 60.0
        self._done = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        conn, timeout = self._conn, self._timeout
        while True:
            data = await conn.read(timeout)
            if not data:
                return
            yield data

    async def aread(self) -> bytes:
        return b"".join([data async for data in self.aiter_raw()])

    @property
    def content(self) -> bytes:
        raise RuntimeError("read the body with aread()")

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        self._client._release(self._conn)


class Http1Client:
    def __init__(self, *, max_connections: int, keepalive_s: float) -> None:
        self._max = max_connections
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open = 0  # connections in use or idle
        self._slot_waiters: deque[asyncio.Future] = deque()
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout,
    ) -> Http1Response:
        """Send; return once the response headers arrived (the body is read later)."""
        parts = urlsplit(url)
        origin = (parts.hostname or "127.0.0.1", parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"{method} {target} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-length: {len(content)}\r\n"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        raw_head = "".join(head).encode("latin-1")
        conn = await self._acquire(origin, timeout)
        try:
            conn.send(raw_head, content)
            await conn.wait_headers(timeout.read or 60.0)
        except BaseException:
            conn.close()
            self._release(conn)
            raise
        return Http1Response(self, conn, timeout)

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        response = await self.request("GET", url, timeout=httpx.Timeout(timeout))
        try:
            return response.status_code, await response.aread()
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # -- the pool -----------------------------------------------------------------
    async def _acquire(self, origin: tuple[str, int], timeout: httpx.Timeout) -> _Connection:
        now = time.monotonic()
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                return conn
            conn.close()
            self._open -= 1
        while self._open >= self._max:
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout.pool or 5.0)
            except TimeoutError:
                raise httpx.PoolTimeout("all upstream connections are busy") from None
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
            idle = self._idle.get(origin)
            if idle:
                return idle.pop()
        self._open += 1
        try:
            return await self._connect(origin, timeout.connect or 5.0)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, origin: tuple[str, int], timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(origin), *origin), timeout
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {origin[0]}:{origin[1]}: {exc}") from exc
        return conn

    def _release(self, conn: _Connection) -> None:
        """Back to the pool when the response was read whole and may be reused; closed
        otherwise (an unfinished stream's close is what makes vLLM abort it)."""
        if conn.complete and conn.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            conn._parser = None
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()
            self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
