"""ASGI responses that deliver one generation, streamed (SSE) or whole (JSON).

Both watch the connection while they wait for tokens: uvicorn drops writes to a
closed connection silently, so a request still queued in the engine would never
notice its client left. On ``http.disconnect`` the generation is aborted, which
frees its batch slot at once, as vLLM does.

A drawn ``Fault`` (``faults``) makes the answer fail on purpose at its point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import Receive, Scope, Send

from loadtest.sim.engine import Generation, SimEngine
from loadtest.sim.faults import GARBAGE_BODY, GARBAGE_EVENT, Fault, InjectedFault
from loadtest.sim.protocol import SYSTEM_FINGERPRINT, response_body
from loadtest.sim.responses_api import EventEncoder, whole_body
from loadtest.sim.sse import CHAT, DONE, ChunkEncoder

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
JSON_HEADERS = [(b"content-type", b"application/json")]


async def _abort_on_disconnect(receive: Receive, abort: Callable[[], object]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            abort()
            return


class _GenerationResponse:
    def __init__(self, engine: SimEngine, gen: Generation, fault: Fault | None = None) -> None:
        self.engine = engine
        self.gen = gen
        self.fault = fault
        self.gone = asyncio.Event()

    def _on_disconnect(self) -> None:
        self.gone.set()
        self.engine.abort(self.gen)

    async def stall(self, fault: Fault) -> None:
        """Send nothing for ``stall_s``, or until the client gives up and leaves."""
        try:
            await asyncio.wait_for(self.gone.wait(), fault.stall_s)
        except TimeoutError:
            pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_abort_on_disconnect(receive, self._on_disconnect))
        try:
            await self.respond(send)
        finally:
            watcher.cancel()
            # A no-op once finished; otherwise (an error, a cancelled task) the slot
            # must not stay taken.
            self.engine.abort(self.gen)

    async def respond(self, send: Send) -> None:
        raise NotImplementedError

    async def _strike(self, fault: Fault, send: Send) -> bool:
        """Act out ``fault``; True when the answer ends here."""
        if fault.kind == "stall":
            await self.stall(fault)
            return False
        if fault.kind == "garbage":
            await send({"type": "http.response.body", "body": GARBAGE_EVENT, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
        raise InjectedFault("reset mid-stream")

    async def whole_text(self, send: Send) -> str | None:
        """The whole generated text; None when the client left (answered 499 here)."""
        queue = self.gen.queue
        parts: list[str] = []
        # get() drains everything, so once closed nothing is left behind.
        while not queue.closed:
            parts.extend(await queue.get())
        if queue.finish_reason == "abort":
            # The client is gone; close the exchange without building a body nobody reads.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return None
        return "".join(parts)

    async def send_whole(self, send: Send, body: bytes) -> None:
        """A whole JSON body, as the drawn fault (if any) spoils it."""
        fault = self.fault
        if fault is not None and fault.kind == "stall":
            await self.stall(fault)
        if fault is not None and fault.kind == "garbage":
            body = GARBAGE_BODY
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if fault is not None and fault.kind == "reset":
            # Half of what Content-Length promised, then the connection drops.
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise InjectedFault("reset mid-body")
        await send({"type": "http.response.body", "body": body, "more_body": False})


class StreamedGeneration(_GenerationResponse):
    """``text/event-stream`` with vLLM's chunk sequence, then ``[DONE]``."""

    def __init__(
        self, engine: SimEngine, gen: Generation, encoder: ChunkEncoder, include_usage: bool, fault: Fault | None = None
    ) -> None:
        super().__init__(engine, gen, fault)
        self.encoder = encoder
        self.include_usage = include_usage

    async def respond(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        queue, encoder = self.gen.queue, self.encoder
        # vLLM sends the chat role chunk with the first output, not before it.
        pending_role = encoder.kind == CHAT
        sent = 0
        chunks = 0
        fault = self.fault
        while True:
            tokens = await queue.get()
            if not tokens:
                break
            if fault is not None and chunks >= fault.after_chunks:
                if await self._strike(fault, send):
                    return
                fault = None
            chunks += 1
            sent += len(tokens)
            text = tokens[0] if len(tokens) == 1 else "".join(tokens)
            reason = queue.finish_reason
            if reason is None or reason == "abort":
                chunk = encoder.text(text, sent)
            else:
                chunk = encoder.final(text, reason, sent)
            if pending_role:
                chunk = encoder.role() + chunk
                pending_role = False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if reason is not None:
                break
        if fault is not None and await self._strike(fault, send):
            return  # fewer chunks came than the fault waited for: it strikes at the end
        tail = b""
        if queue.finish_reason != "abort":
            tail = (encoder.usage(sent) if self.include_usage else b"") + DONE
        await send({"type": "http.response.body", "body": tail, "more_body": False})


class WholeGeneration(_GenerationResponse):
    """The non-streamed JSON body, sent once the generation finished."""

    def __init__(
        self,
        engine: SimEngine,
        gen: Generation,
        kind: str,
        request_id: str,
        created: int,
        model: str,
        fault: Fault | None = None,
    ) -> None:
        super().__init__(engine, gen, fault)
        self.kind = kind
        self.request_id = request_id
        self.created = created
        self.model = model

    async def respond(self, send: Send) -> None:
        text = await self.whole_text(send)
        if text is None:
            return
        body = response_body(
            self.kind,
            self.request_id,
            self.created,
            self.model,
            text,
            self.gen.queue.finish_reason or "stop",
            self.gen.prompt_tokens,
            self.gen.completion_tokens,
            SYSTEM_FINGERPRINT,
        )
        await self.send_whole(send, body)


class ResponsesStream(_GenerationResponse):
    """The Responses API's typed event stream (``loadtest.sim.responses_api``); it ends
    with ``response.completed``, no ``[DONE]``."""

    def __init__(self, engine: SimEngine, gen: Generation, encoder: EventEncoder, fault: Fault | None = None) -> None:
        super().__init__(engine, gen, fault)
        self.encoder = encoder

    async def respond(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        queue, encoder = self.gen.queue, self.encoder
        await send({"type": "http.response.body", "body": encoder.start(), "more_body": True})
        sent = 0
        chunks = 0
        fault = self.fault
        while True:
            tokens = await queue.get()
            if not tokens:
                break
            if fault is not None and chunks >= fault.after_chunks:
                if await self._strike(fault, send):
                    return
                fault = None
            chunks += 1
            sent += len(tokens)
            await send({"type": "http.response.body", "body": encoder.delta("".join(tokens)), "more_body": True})
            if queue.finish_reason is not None:
                break
        if fault is not None and await self._strike(fault, send):
            return
        tail = b""
        if queue.finish_reason != "abort":
            tail = encoder.finish(sent, queue.finish_reason or "stop")
        await send({"type": "http.response.body", "body": tail, "more_body": False})


class ResponsesWhole(_GenerationResponse):
    """The non-streamed Response object, sent once the generation finished."""

    def __init__(self, engine: SimEngine, gen: Generation, rid: str, model: str, fault: Fault | None = None) -> None:
        super().__init__(engine, gen, fault)
        self.rid = rid
        self.model = model

    async def respond(self, send: Send) -> None:
        text = await self.whole_text(send)
        if text is None:
            return
        body = whole_body(
            self.rid,
            self.model,
            text,
            self.gen.queue.finish_reason or "stop",
            self.gen.prompt_tokens,
            self.gen.completion_tokens,
        )
        await self.send_whole(send, body)
