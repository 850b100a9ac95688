"""The uvicorn server the gateway runs on, with what uvicorn does not bound by itself.

- **Request headers** (slowloris): uvicorn times only the idle gap between two
  keep-alive requests, so a connection that sends nothing, or one header byte a
  second, is held forever. ``HeaderLimitProtocol`` (uvicorn's httptools protocol)
  times each request from the connection opening or its first byte to its last
  header, and caps the header bytes: 408 / 431 in the OpenAI shape, then close.
- **Listeners**: with ``metrics.listen`` the one server also listens there (one
  process, one signal handler, one graceful shutdown); ``gateway.listeners`` routes
  by the port a request came in on.
- **Shutdown**: ``GatewayServer`` runs uvicorn's graceful shutdown with
  ``shutdown_grace_s`` and, when that is over, ends the streams still open with a
  ``shutting_down`` event (``gateway.drain``) before uvicorn cancels what is left.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.client_timeouts import RequestTimeout
from gateway.drain import StreamDrain
from gateway.errors import GatewayError

# Time the ended streams get to write their last event before uvicorn cancels them.
STOP_FLUSH_S = 1.0


class HeaderTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class HeaderLimitProtocol(HttpToolsProtocol):
    """httptools HTTP/1.1 with a deadline and a size cap on each request's headers."""

    def __init__(
        self, *args, header_timeout_s: float, max_header_bytes: int, on_reject: Callable[[int], None], **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._max_header_bytes = max_header_bytes
        self._on_reject = on_reject
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._rejected = False  # answered 408/431: parse nothing more, start no request

    # A request starts when the connection opens (nothing sent yet) or at its first byte;
    # it may take header_timeout_s to finish its headers.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._rejected:
            super().data_received(data)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self._disarm()
        if not self._rejected:
            super().on_headers_complete()

    # The rest of a rejected request may still be in the buffer being parsed.
    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._rejected:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            self._reject(
                HeaderTooLarge(f"request line and headers exceed {self._max_header_bytes} bytes (max_header_bytes)")
            )

    def _timed_out(self) -> None:
        self._header_timer = None
        self._reject(
            RequestTimeout(
                f"the request headers did not arrive within {self._header_timeout_s:g} s (timeouts.client_header_s)"
            )
        )

    def _reject(self, error: GatewayError) -> None:
        self._disarm()
        if self._rejected or self.transport.is_closing():
            return
        self._rejected = True
        self._on_reject(error.status)
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request trickles in while the one before it is answered: let that
            # answer finish, then close instead of reading on.
            self.cycle.keep_alive = False
            return
        body = error.body_bytes()
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


class GatewayServer(uvicorn.Server):
    """uvicorn's server; at the end of the grace period, open streams get their last event."""

    def __init__(self, config: uvicorn.Config, drain: StreamDrain, grace_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        timer = asyncio.get_running_loop().call_later(self._grace_s, self._drain.stop)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket, as uvicorn binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def build_server(app, settings) -> tuple[GatewayServer, list[socket.socket] | None]:
    """The server for ``create_app``'s app and, with ``metrics.listen``, the two sockets
    to pass to its ``run``."""
    requests = app.state.metrics.requests

    def on_reject(status: int) -> None:
        requests.labels("other", "unknown", str(status)).inc()

    protocol = functools.partial(
        HeaderLimitProtocol,
        header_timeout_s=settings.timeouts.client_header_s,
        max_header_bytes=settings.max_header_bytes,
        on_reject=on_reject,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=protocol,
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s + STOP_FLUSH_S,
    )
    server = GatewayServer(config, app.state.drain, settings.shutdown_grace_s)
    address = settings.metrics.address
    if address is None:
        return server, None
    return server, [bind(settings.host, settings.port), bind(*address)]
