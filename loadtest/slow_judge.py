"""A slow LLM judge: an OpenAI chat endpoint with a fixed latency and a few slots.

Stands in for Llama Guard on a GPU that is past its capacity: each answer takes
``latency_s`` and at most ``slots`` are served at once, so it answers
``slots / latency_s`` checks a second and queues the rest (as vLLM would). It answers
``unsafe`` / ``S1`` when the user message contains ``unsafe_word``, else ``safe``.
``GET /stats`` reports what it served, for the bench to tell how busy it was.

    python -m loadtest.slow_judge --port 9100 --latency-ms 100 --slots 4

A bare ASGI app (no framework): the bench needs it cheap, so the judge's own CPU does
not blur its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


class SlowJudge:
    """The ASGI app. ``served``/``busy_s`` accumulate until the process ends."""

    def __init__(self, *, latency_s: float = 0.1, slots: int = 4, unsafe_word: str = "UNSAFE") -> None:
        self.latency_s = latency_s
        self.slots = slots
        self.unsafe_word = unsafe_word
        self.served = 0
        self.waiting = 0
        self.started = time.monotonic()
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        if path in ("/health", "/stats"):
            await _json(send, 200, self.stats())
        elif path == "/v1/chat/completions" and scope["method"] == "POST":
            await _json(send, 200, await self._judge(body))
        else:
            await _json(
                send, 404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": None}}
            )

    async def _judge(self, body: bytes) -> dict:
        request = json.loads(body or b"{}")
        text = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.slots)
        self.waiting += 1
        try:
            async with self._slots:
                await asyncio.sleep(self.latency_s)
        finally:
            self.waiting -= 1
        self.served += 1
        answer = "unsafe\nS1" if self.unsafe_word in text else "safe"
        return {
            "id": "judge",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "judge"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def stats(self) -> dict:
        return {
            "served": self.served,
            "waiting": self.waiting,
            "capacity_per_s": self.slots / self.latency_s,
            "uptime_s": time.monotonic() - self.started,
        }


async def _json(send, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.slow_judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="listen port (default 9100)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="time one answer takes (default 100)")
    parser.add_argument("--slots", type=int, default=4, help="answers served at once; the rest queue (default 4)")
    parser.add_argument(
        "--unsafe-word", default="UNSAFE", help="a message containing it is judged unsafe (default UNSAFE)"
    )
    args = parser.parse_args(argv)
    import uvicorn

    app = SlowJudge(latency_s=args.latency_ms / 1000.0, slots=args.slots, unsafe_word=args.unsafe_word)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
