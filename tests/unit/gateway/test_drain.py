import asyncio

import orjson
import pytest

from gateway.context import RequestContext
from gateway.drain import StreamDrain


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


async def test_stop_ends_open_streams_with_one_shutting_down_event():
    drain, ctx, closed = StreamDrain(), context(), []
    task = asyncio.create_task(consume(drain, ctx, closed))
    await asyncio.sleep(0.01)
    assert drain.open_streams == 1
    assert drain.stop() == 1
    out = await asyncio.wait_for(task, 5)
    assert out[0] == b"data: one\n\n"
    assert orjson.loads(out[1][6:])["error"]["code"] == "shutting_down"
    assert len(out) == 2 and out[1].endswith(b"\n\n")
    assert ctx.status == 503 and closed == ["upstream"] and drain.open_streams == 0
    assert not task.cancelled()


async def test_any_other_cancellation_passes_through():
    drain, ctx, closed = StreamDrain(), context(), []
    task = asyncio.create_task(consume(drain, ctx, closed))
    await asyncio.sleep(0.01)
    task.cancel()  # e.g. the client left
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.status == 200 and closed == ["upstream"] and drain.open_streams == 0


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
