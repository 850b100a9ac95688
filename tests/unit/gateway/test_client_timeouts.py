import asyncio

import pytest

from gateway.client_timeouts import BodyTimeout, RequestTimeout


def feeder(messages: list[dict], gap_s: float):
    """An ASGI receive that hands out ``messages`` ``gap_s`` apart, then never returns."""
    queue = list(messages)

    async def receive():
        if not queue:
            await asyncio.Event().wait()
        await asyncio.sleep(gap_s)
        return queue.pop(0)

    return receive


def body(data: bytes, more: bool) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


async def run(app_reads: int, messages: list[dict], gap_s: float, timeout_s: float):
    got = []

    async def app(scope, receive, send):
        for _ in range(app_reads):
            got.append(await receive())

    await BodyTimeout(app, timeout_s)({"type": "http"}, feeder(messages, gap_s), None)
    return got


async def test_a_body_in_time_passes_unchanged():
    messages = [body(b"a", True), body(b"b", False)]
    assert await run(2, messages, 0.001, 1.0) == messages


async def test_a_body_too_slow_raises_request_timeout_as_a_408():
    with pytest.raises(RequestTimeout) as error:
        await run(3, [body(b"a", True), body(b"b", True)], 0.02, 0.05)
    assert error.value.status == 408 and error.value.code == "request_timeout"
    assert error.value.headers()["connection"] == "close"
    assert "client_body_s" in error.value.message


async def test_after_the_body_the_wait_for_a_disconnect_is_not_bounded():
    messages = [body(b"", False), {"type": "http.disconnect"}]
    # The disconnect comes after the deadline; it is the response's wait, not the body's.
    assert await run(2, messages, 0.06, 0.1) == messages


async def test_non_http_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], receive))

    receive = feeder([], 0)
    await BodyTimeout(app, 0.01)({"type": "lifespan"}, receive, None)
    assert seen == [("lifespan", receive)]
