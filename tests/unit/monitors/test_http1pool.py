"""The engine client's HTTP/1.1 pool against scripted servers on loopback (raw asyncio
servers: the faults to show are at the socket level)."""

from __future__ import annotations

import asyncio

import pytest

from monitors.http1pool import Http1Pool, ProtocolError
from tests.servers import free_port


class Scripted:
    """A loopback HTTP server whose answer per request is a function of the request count."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = free_port()

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                action = self.answer(len(self.requests))
                if action == "reset":
                    writer.transport.abort()
                    return
                writer.write(action)
                await writer.drain()
                if b"Connection: close" in action:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def ok(body: bytes = b'{"ok": true}', extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_requests_reuse_one_connection_and_send_what_is_asked():
    async with Scripted(lambda n: ok()) as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=2, headers={"Authorization": "Bearer k"})
        try:
            for _ in range(3):
                assert await pool.request("POST", "/classify", b'{"a": 1}', {"detector-id": "d"}) == (
                    200,
                    b'{"ok": true}',
                )
        finally:
            await pool.aclose()
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("POST /classify HTTP/1.1\r\n")
    for header in (
        "Authorization: Bearer k",
        "detector-id: d",
        "Content-Type: application/json",
        "Content-Length: 8",
        f"Host: 127.0.0.1:{server.port}",
    ):
        assert header in first


async def test_chunked_answers_and_error_statuses_are_read_whole():
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n"
    async with Scripted(lambda n: chunked) as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            assert await pool.request("GET", "/v1/models") == (503, b"busy")
        finally:
            await pool.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced():
    async with Scripted(lambda n: ok(extra="Connection: close\r\n") if n == 1 else ok()) as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            assert (await pool.request("GET", "/a"))[0] == 200
            assert (await pool.request("GET", "/b"))[0] == 200
        finally:
            await pool.aclose()
    assert server.connections == 2


async def test_a_reset_before_any_answer_is_retried_once_on_a_fresh_connection():
    async with Scripted(lambda n: "reset" if n == 2 else ok()) as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            assert (await pool.request("GET", "/a"))[0] == 200
            # The second request meets a reset on the reused connection: sent again, answered.
            assert (await pool.request("GET", "/b"))[0] == 200
        finally:
            await pool.aclose()
    assert len(server.requests) == 3 and server.connections == 2


async def test_a_reset_on_a_fresh_connection_raises():
    async with Scripted(lambda n: "reset") as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            with pytest.raises(ConnectionError):
                await pool.request("GET", "/a")
        finally:
            await pool.aclose()


async def test_an_answer_cut_short_raises_and_garbage_is_a_protocol_error():
    async with Scripted(
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\npartial"
    ) as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            with pytest.raises(ConnectionError):
                await pool.request("GET", "/a")
        finally:
            await pool.aclose()
    async with Scripted(lambda n: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
        pool = Http1Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
        try:
            with pytest.raises(ProtocolError):
                await pool.request("GET", "/a")
        finally:
            await pool.aclose()


async def test_a_refused_connection_raises_oserror():
    pool = Http1Pool(f"http://127.0.0.1:{free_port()}", max_connections=1)
    with pytest.raises(OSError):
        await pool.request("GET", "/a")
    await pool.aclose()


def test_only_http_urls():
    with pytest.raises(ValueError):
        Http1Pool("ftp://x", max_connections=1)
