"""API keys: a pure-ASGI middleware that answers 401 before the route runs.

Only the protected routes (path and methods, as the router declares them) ask for a key,
so a wrong method or an unknown path is still the router's 405 or 404. The presented
bearer key is compared with every configured key, always, each with
``hmac.compare_digest``, so the answer's timing tells neither whether a key matched nor
which. A request let through is passed on with the server's own ``send``: the response
is never touched.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Unauthorized, error_response

_BEARER = b"bearer "


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bearer key of the (first) ``Authorization`` header; empty when there is none."""
    for name, value in headers:
        if name == b"authorization":
            return value[7:] if value[:7].lower() == _BEARER else b""
    return b""


def key_matches(presented: bytes, keys: Iterable[bytes]) -> bool:
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


class ApiKeyAuth:
    """``protected``: path -> the methods that need a key there. ``on_refused(path)``
    counts each 401."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        protected: Mapping[str, Iterable[str]],
        on_refused: Callable[[str], None],
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.protected = {path: frozenset(methods) for path, methods in protected.items()}
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            methods = self.protected.get(scope["path"])
            if (
                methods is not None
                and scope["method"] in methods
                and not key_matches(presented_key(scope["headers"]), self.keys)
            ):
                self.on_refused(scope["path"])
                error = Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>'")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
