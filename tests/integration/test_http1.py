"""The gateway's own HTTP/1.1 upstream client against a scripted server on loopback."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.http1 import Http1Client

pytestmark = pytest.mark.integration
TIMEOUT = httpx.Timeout(connect=2, read=1, write=1, pool=0.5)


async def serve(answer):
    """A server that reads one request head (and its Content-Length body), then runs
    ``answer(reader, writer)``; returns the base URL and the connections it saw."""
    seen = []

    async def handle(reader, writer):
        seen.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ]
                body = await reader.readexactly(length[0]) if length else b""
                if not await answer(head, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def chunked(*parts: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    for part in parts:
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


async def test_chunked_stream_and_keep_alive_reuse():
    async def answer(head, body, writer):
        assert body == b'{"x":1}'
        writer.write(chunked(b"data: a\n\n", b"data: b\n\n"))
        return True

    server, url, seen = await serve(answer)
    client = Http1Client(max_connections=4, keepalive_s=5)
    for _ in range(3):
        response = await client.request("POST", url + "/v1/chat/completions", content=b'{"x":1}', timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert await response.aread() == b"data: a\n\ndata: b\n\n"
        await response.aclose()
    assert len(seen) == 1  # one connection, reused
    await client.aclose()
    server.close()


async def test_close_mid_body_is_a_read_error_and_the_connection_is_not_reused():
    async def answer(head, body, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        return False

    server, url, seen = await serve(answer)
    client = Http1Client(max_connections=1, keepalive_s=5)
    response = await client.request("POST", url + "/", timeout=TIMEOUT)
    with pytest.raises(httpx.ReadError):
        await response.aread()
    await response.aclose()
    response = await client.request("POST", url + "/", timeout=TIMEOUT)  # a fresh connection
    await response.aclose()
    assert len(seen) == 2
    await client.aclose()
    server.close()


async def test_silence_is_a_read_timeout_and_a_refused_port_a_connect_error():
    async def answer(head, body, writer):
        await asyncio.sleep(5)
        return False

    server, url, _ = await serve(answer)
    client = Http1Client(max_connections=2, keepalive_s=5)
    with pytest.raises(httpx.ReadTimeout):
        await client.request("POST", url + "/", timeout=TIMEOUT)
    with pytest.raises(httpx.ConnectError):
        await client.request("POST", "http://127.0.0.1:1/", timeout=TIMEOUT)
    await client.aclose()
    server.close()


async def test_pool_limit_waits_then_times_out():
    async def answer(head, body, writer):
        writer.write(chunked(b"x"))
        return True

    server, url, _ = await serve(answer)
    client = Http1Client(max_connections=1, keepalive_s=5)
    held = await client.request("POST", url + "/", timeout=TIMEOUT)
    with pytest.raises(httpx.PoolTimeout):
        await client.request("POST", url + "/", timeout=TIMEOUT)
    waiting = asyncio.ensure_future(client.request("POST", url + "/", timeout=TIMEOUT))
    await asyncio.sleep(0.05)
    await held.aread()
    await held.aclose()  # frees the connection for the waiting request
    response = await waiting
    assert await response.aread() == b"x"
    await response.aclose()
    await client.aclose()
    server.close()


async def test_garbage_instead_of_http_is_a_protocol_error():
    async def answer(head, body, writer):
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        return False

    server, url, _ = await serve(answer)
    client = Http1Client(max_connections=1, keepalive_s=5)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.request("POST", url + "/", timeout=TIMEOUT)
    await client.aclose()
    server.close()
