"""Two listeners, one app: with ``metrics.listen`` the operator endpoints move there.

``/metrics`` and ``/ready`` name the upstreams and the models; an operator who does
not want them on the port the clients reach gives them a port of their own (one
only Prometheus and the probes reach). The server listens on both; this pure-ASGI
middleware routes by the port a request came in on, before anything else runs:
the operator paths answer only there, every other path only on the main port, and
``/health`` (it says nothing but "alive") on both. A refusal is a 404 in the OpenAI
shape, as for any unknown route.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import NotFound, error_response

OPS_PATHS = frozenset({"/metrics", "/ready"})
BOTH = frozenset({"/health"})


def wrong_listener(path: str, on_ops_port: bool) -> bool:
    """True when ``path`` is not served on the listener the request came in on."""
    if path in BOTH:
        return False
    return on_ops_port != (path in OPS_PATHS)


class ListenerSplit:
    def __init__(self, app: ASGIApp, ops_port: int, on_refused: Callable[[], None]) -> None:
        self.app = app
        self.ops_port = ops_port
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_ops = server is not None and server[1] == self.ops_port
            if wrong_listener(scope["path"], on_ops):
                self.on_refused()
                where = "the metrics listener" if on_ops else "this port"
                error = NotFound(f"no route {scope['method']} {scope['path']} on {where}")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
