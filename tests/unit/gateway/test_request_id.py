import pytest

from gateway.request_id import RequestId, given_id


def app_seeing(seen: list):
    """A tiny ASGI app: records the id it was given, answers 200 with two body chunks."""

    async def app(scope, receive, send):
        seen.append(scope["state"]["request_id"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: 2\n\n"})

    return app


async def call(middleware, headers):
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    await middleware(scope, None, send)
    return sent


async def test_the_clients_id_reaches_the_handler_and_the_response():
    seen = []
    sent = await call(RequestId(app_seeing(seen)), [(b"x-request-id", b"rid-1")])
    assert seen == ["rid-1"]
    assert sent[0]["headers"] == [(b"content-type", b"text/event-stream"), (b"x-request-id", b"rid-1")]


async def test_without_one_an_id_is_made():
    seen = []
    sent = await call(RequestId(app_seeing(seen), new_id=lambda: "made"), [])
    assert seen == ["made"] and (b"x-request-id", b"made") in sent[0]["headers"]


@pytest.mark.parametrize("value", [b"", b"abc def", b"abc\xff", b"x" * 129, b"tab\there"])
async def test_an_id_that_cannot_be_passed_on_is_replaced(value):
    seen = []
    sent = await call(RequestId(app_seeing(seen), new_id=lambda: "fresh"), [(b"x-request-id", value)])
    assert seen == ["fresh"] and sent[0]["headers"][-1] == (b"x-request-id", b"fresh")


def test_the_first_header_counts_and_printable_ascii_up_to_128_passes():
    assert given_id([(b"x-request-id", b"a"), (b"x-request-id", b"b")]) == "a"
    assert given_id([(b"x-request-id", b"!~" * 64)]) == "!~" * 64
    assert given_id([(b"x-other", b"a")]) is None


async def test_body_messages_pass_as_they_are_and_the_response_headers_are_not_edited():
    seen = []
    own = [(b"content-type", b"text/event-stream")]

    async def app(scope, receive, send):
        seen.append(scope["state"]["request_id"])
        await send({"type": "http.response.start", "status": 200, "headers": own})
        body = {"type": "http.response.body", "body": b"data: 1\n\n"}
        await send(body)
        seen.append(body)

    sent = await call(RequestId(app, new_id=lambda: "r"), [])
    assert own == [(b"content-type", b"text/event-stream")]  # a new list went out
    assert sent[1] is seen[1] and sent[1] == {"type": "http.response.body", "body": b"data: 1\n\n"}


async def test_each_request_gets_its_own_id_and_other_scopes_pass_untouched():
    seen = []
    ids = iter(["one", "two"])
    middleware = RequestId(app_seeing(seen), new_id=lambda: next(ids))
    await call(middleware, [])
    await call(middleware, [])
    assert seen == ["one", "two"]
    lifespan = {"type": "lifespan"}
    reached = []

    async def app(scope, receive, send):
        reached.append(scope)

    await RequestId(app)(lifespan, None, None)
    assert reached == [{"type": "lifespan"}]
