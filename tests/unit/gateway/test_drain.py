import asyncio

import orjson
import pytest

from gateway.context import RequestContext
from gateway.drain import DrainMiddleware, StreamDrain
from tests.waiting import wait_until


async def upstream(closed: list[str]):
    try:
        yield b"data: one\n\n"
        await asyncio.sleep(30)  # a long generation
        yield b"data: late\n\n"
    finally:
        closed.append("upstream")


async def consume(drain: StreamDrain, ctx: RequestContext, closed: list[str]) -> list[bytes]:
    out = []
    async for data in drain.guard(upstream(closed), ctx):
        out.append(data)
    return out


def context() -> RequestContext:
    ctx = RequestContext(request_id="r", route="chat", started=0.0)
    ctx.status = 200
    return ctx


async def test_stop_ends_open_requests_with_one_shutting_down_event():
    drain, ctx, closed = StreamDrain(), context(), []
    task = asyncio.create_task(consume(drain, ctx, closed))
    await wait_until(lambda: drain.open_requests == 1, what="the stream open")
    assert drain.stop() == 1
    out = await asyncio.wait_for(task, 5)
    assert out[0] == b"data: one\n\n"
    assert orjson.loads(out[1][6:])["error"]["code"] == "shutting_down"
    assert len(out) == 2 and out[1].endswith(b"\n\n")
    assert ctx.status == 503 and closed == ["upstream"] and drain.open_requests == 0
    assert not task.cancelled()


async def test_any_other_cancellation_passes_through():
    drain, ctx, closed = StreamDrain(), context(), []
    task = asyncio.create_task(consume(drain, ctx, closed))
    await wait_until(lambda: drain.open_requests == 1, what="the stream open")
    task.cancel()  # e.g. the client left
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.status == 200 and closed == ["upstream"] and drain.open_requests == 0


async def test_a_stream_opened_after_stop_ends_at_once():
    drain, ctx, closed = StreamDrain(), context(), []
    drain.stop()
    out = await asyncio.wait_for(consume(drain, ctx, closed), 5)
    assert len(out) == 1 and b"shutting_down" in out[0] and ctx.status == 503


async def test_a_finished_stream_is_untouched():
    drain, ctx = StreamDrain(), context()

    async def short():
        yield b"a"
        yield b"b"

    assert [d async for d in drain.guard(short(), ctx)] == [b"a", b"b"]
    assert drain.stop() == 0 and ctx.status == 200


def middleware_app(drain: StreamDrain, stopped: list[str], work):
    async def app(scope, receive, send):
        await work(scope, receive, send)

    return DrainMiddleware(app, drain, on_stopped=stopped.append)


async def test_a_request_without_an_answer_yet_gets_a_503_at_stop():
    drain, stopped, sent = StreamDrain(), [], []

    async def waits_on_upstream(scope, receive, send):
        await asyncio.sleep(30)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/completions"}
    task = asyncio.create_task(middleware_app(drain, stopped, waits_on_upstream)(scope, None, send))
    await wait_until(lambda: drain.open_requests == 1, what="the request open")
    assert drain.stop() == 1
    await asyncio.wait_for(task, 5)
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "shutting_down"
    assert stopped == ["/v1/completions"] and drain.open_requests == 0


async def test_a_streaming_request_is_stopped_in_its_stream_not_around_it():
    drain, stopped, out = StreamDrain(), [], []
    ctx, closed = context(), []

    async def streams(scope, receive, send):
        # As Starlette's StreamingResponse: the body runs in a child task.
        async def child():
            async for data in drain.guard(upstream(closed), ctx):
                out.append(data)

        await asyncio.create_task(child())

    task = asyncio.create_task(
        middleware_app(drain, stopped, streams)(
            {"type": "http", "method": "POST", "path": "/v1/chat/completions"}, None, None
        )
    )
    # The stream's child task has sent its first event (and is now in the upstream's wait).
    await wait_until(lambda: out == [b"data: one\n\n"], what="the stream started")
    assert drain.stop() == 1
    await asyncio.wait_for(task, 5)
    assert b"shutting_down" in out[-1] and stopped == [] and ctx.status == 503


async def test_the_middleware_passes_other_cancellations_on():
    drain, stopped = StreamDrain(), []

    async def waits(scope, receive, send):
        await asyncio.sleep(30)

    task = asyncio.create_task(
        middleware_app(drain, stopped, waits)({"type": "http", "method": "GET", "path": "/x"}, None, None)
    )
    await wait_until(lambda: drain.open_requests == 1, what="the request open")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == [] and drain.open_requests == 0
