"""A lean keep-alive HTTP/1.1 client for monitors that call a serving engine.

A served classifier is called at nearly every token of every stream, so the gateway's
CPU per call is the monitor's cost: httpx spends ~1.2 ms of CPU on one small POST here,
this ~0.1 ms (an asyncio Protocol feeding httptools' C parser, whole bodies only; see
the README's classifier section). It speaks what an engine's API needs: one request per
connection at a time, ``Content-Length`` request bodies, responses with a length or
chunked, keep-alive reuse with an idle expiry, a bound on connections, TLS for https.

Failures raise ``OSError`` (refused, reset, closed mid-response: ``ConnectionError``),
``TimeoutError`` or ``ProtocolError``; ``monitors.builtin.engine`` turns them into
monitor errors. A request that fails on a reused connection before any byte of the
answer arrived is sent once more on a fresh one: the server may have closed the idle
connection just then, and the engine calls made here (classify, detect) are idempotent.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

import httptools

__all__ = ["Http1Pool", "ProtocolError"]

# Idle connections older than this are closed rather than reused: servers drop idle
# keep-alive connections (uvicorn, under vLLM, after 5 s).
_IDLE_S = 4.0


class ProtocolError(OSError):
    """The server's bytes are not an HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = time.monotonic()
        self.closed = False
        self.received = False
        self._parser: httptools.HttpResponseParser | None = None
        self._body: list[bytes] = []
        self._done: asyncio.Future[None] | None = None
        self.status = 0
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._parser is None:
            self._finish(ProtocolError("the server sent bytes outside a response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(ProtocolError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and exc is None and self.received:
            try:  # a body delimited by the connection's end ends here
                self._parser.feed_data(b"")
            except httptools.HttpParserError:
                pass
        self._finish(ConnectionResetError(f"the server closed the connection{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_status(self, _status: bytes) -> None:
        self.status = self._parser.get_status_code()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()  # type: ignore[union-attr]
        self._finish(None)

    def _finish(self, error: Exception | None) -> None:
        done = self._done
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("the connection is closed")
        self._parser = httptools.HttpResponseParser(self)
        self._body = []
        self.status, self.keep_alive, self.received = 0, False, False
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            await self._done
        finally:
            self._done = None
            self._parser = None
        return self.status, b"".join(self._body)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to one origin (``base_url``'s scheme, host and port)."""

    def __init__(self, base_url: str, *, max_connections: int, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {base_url!r} must be an http:// or https:// URL")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rpartition("@")[2]
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = f"Host: {host_header}\r\nUser-Agent: taxgate\r\n{extra}"
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._all: set[_Connection] = set()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)`` of one request; see the module doc for what it raises."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        typed = "Content-Type: application/json\r\n" if body else ""
        data = (f"{method} {path} HTTP/1.1\r\n{self._head}{extra}{typed}Content-Length: {len(body)}\r\n\r\n").encode(
            "latin-1"
        ) + body
        async with self._slots:
            connection = self._reusable()
            if connection is not None:
                try:
                    return await self._use(connection, data)
                except ConnectionError:
                    if connection.received:
                        raise  # the server began an answer: not a stale connection
            return await self._use(await self._connect(), data)

    async def _use(self, connection: _Connection, data: bytes) -> tuple[int, bytes]:
        try:
            status, body = await connection.exchange(data)
        except BaseException:
            self._drop(connection)  # cancelled or failed mid-exchange: never reused
            raise
        if connection.keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            self._drop(connection)
        return status, body

    def _reusable(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < _IDLE_S:
                return connection
            self._drop(connection)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl)
        self._all.add(connection)
        return connection

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._all):
            self._drop(connection)
        self._idle.clear()
