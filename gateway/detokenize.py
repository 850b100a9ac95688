"""Token-id prompts back to text, through the upstream's own tokenizer.

vLLM serves ``POST /detokenize`` (``{"model", "tokens"}`` -> ``{"prompt"}``) with the
model's tokenizer, so the text the input monitors check is the text the model reads.
The call goes through the upstream pool (same replicas, same selection, same client):
nothing but the configured upstreams is ever contacted. Anything but a well-formed
answer refuses the request (``UncheckableRejected``); the prompt is never passed on
unchecked. Transport faults keep the pool's own errors (502/503/504).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import orjson

from gateway.errors import UpstreamError
from gateway.input_text import TokenPrompt
from gateway.metrics import GatewayMetrics
from gateway.uncheckable import detokenize_failed
from gateway.upstream import UpstreamPool

PATH = "/detokenize"
# Per request: a batch of token prompts is detokenized concurrently, but one client
# must not open hundreds of upstream requests at once.
CONCURRENCY = 8

# (path, body, headers, model) -> (status, body)
Post = Callable[[str, bytes, dict[str, str], str], Awaitable[tuple[int, bytes]]]


def pool_post(pool: UpstreamPool, metrics: GatewayMetrics) -> Post:
    """A ``Post`` over the upstream pool (which counts its own connect/timeout faults)."""

    async def post(path: str, body: bytes, headers: dict[str, str], model: str) -> tuple[int, bytes]:
        call = await pool.open(path, body, headers, model=model, stream=False)
        try:
            return call.response.status_code, await call.response.aread()
        except httpx.HTTPError as exc:
            metrics.upstream_errors.labels(call.replica.url, "midstream").inc()
            raise UpstreamError(f"upstream {call.replica.url} failed while detokenizing: {type(exc).__name__}") from exc
        finally:
            await call.aclose()

    return post


class Detokenizer:
    def __init__(self, post: Post) -> None:
        self._post = post

    async def texts(self, prompts: list[TokenPrompt], *, model: str, request_id: str) -> list[str]:
        """The text of each prompt, in order; raises on the first that fails."""
        headers = {"content-type": "application/json", "x-request-id": request_id}
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(prompt: TokenPrompt) -> str:
            async with limit:
                return await self._one(prompt, model, headers)

        if len(prompts) == 1:
            return [await self._one(prompts[0], model, headers)]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(prompt)) for prompt in prompts]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _one(self, prompt: TokenPrompt, model: str, headers: dict[str, str]) -> str:
        param = ".".join(str(key) for key in prompt.path)
        body = orjson.dumps({"model": model, "tokens": prompt.tokens})
        status, answer = await self._post(PATH, body, headers, model)
        if status != 200:
            raise detokenize_failed(param, f"{PATH} answered HTTP {status}")
        try:
            text = orjson.loads(answer).get("prompt")
        except (orjson.JSONDecodeError, AttributeError):
            text = None
        if not isinstance(text, str):
            raise detokenize_failed(param, f"{PATH} answered no prompt text")
        return text
