import hmac

import orjson
import pytest

from gateway import auth
from gateway.auth import ApiKeyAuth, presented_key

PROTECTED = {"/v1/chat/completions": {"POST"}, "/v1/models": {"GET", "HEAD"}}


def guarded(keys=("k-one", "k-two")):
    reached, refused = [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return ApiKeyAuth(app, keys=list(keys), protected=PROTECTED, on_refused=refused.append), reached, refused


async def call(middleware, path, method="POST", authorization=None):
    sent = []

    async def send(message):
        sent.append(message)

    headers = [] if authorization is None else [(b"authorization", authorization)]
    await middleware({"type": "http", "method": method, "path": path, "headers": headers}, None, send)
    status = sent[0]["status"]
    return status, dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    "authorization", [None, b"Bearer wrong", b"k-one", b"Basic k-one", b"Bearer ", b"Bearer k-one ", b"Bearer k-on"]
)
async def test_a_missing_or_wrong_key_is_an_openai_shaped_401_and_counted(authorization):
    middleware, reached, refused = guarded()
    status, headers, body = await call(middleware, "/v1/chat/completions", authorization=authorization)
    assert status == 401 and reached == [] and refused == ["/v1/chat/completions"]
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(body)).encode()
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")


@pytest.mark.parametrize("authorization", [b"Bearer k-one", b"Bearer k-two", b"bearer k-two", b"BEARER k-one"])
async def test_any_configured_key_passes(authorization):
    middleware, reached, refused = guarded()
    assert await call(middleware, "/v1/chat/completions", authorization=authorization) == (200, {}, b"ok")
    assert reached == ["/v1/chat/completions"] and refused == []


@pytest.mark.parametrize(
    "path, method",
    [
        ("/health", "GET"),
        ("/metrics", "GET"),
        ("/nowhere", "POST"),
        ("/v1/chat/completions", "GET"),
        ("/v1/models", "POST"),
    ],
)
async def test_only_the_protected_methods_of_protected_paths_ask(path, method):
    # Anything else reaches the app: its own 404 or 405 stays what it is.
    middleware, reached, refused = guarded()
    status, _, _ = await call(middleware, path, method=method)
    assert status == 200 and reached == [path] and refused == []


async def test_head_is_protected_where_the_router_declares_it():
    middleware, reached, _ = guarded()
    assert (await call(middleware, "/v1/models", method="HEAD"))[0] == 401
    assert (await call(middleware, "/v1/models", "GET", b"Bearer k-two"))[0] == 200


async def test_every_key_is_compared_in_constant_time_whatever_matches(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    middleware, _, _ = guarded()
    await call(middleware, "/v1/chat/completions", authorization=b"Bearer k-one")
    await call(middleware, "/v1/chat/completions", authorization=b"Bearer nope")
    # The first key matching does not stop the loop: both keys are compared, each time.
    assert compared == [(b"k-one", b"k-one"), (b"k-one", b"k-two"), (b"nope", b"k-one"), (b"nope", b"k-two")]


def test_the_first_authorization_header_is_the_one_read():
    assert presented_key([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]) == b"a"
    assert presented_key([(b"x-api-key", b"a")]) == b""


async def test_non_http_scopes_pass():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    await ApiKeyAuth(app, keys=["k"], protected=PROTECTED, on_refused=print)({"type": "lifespan"}, None, None)
    assert reached == ["lifespan"]
