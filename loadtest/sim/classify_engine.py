"""The simulator's ``/classify``: parse a request like vLLM's pooling server, wait as a GPU
classifier would (``classify.py``'s model, driven in real time), answer vLLM's shape.

One task runs the engine's steps: every call waiting when a step starts joins it (up
to the profile's token budget), the step sleeps for its modelled duration, and its
calls are answered together.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from dataclasses import dataclass

import orjson

from loadtest.sim.classify import LABELS, ClassifierProfile, score, take_step
from loadtest.sim.protocol import RequestError
from loadtest.sim.tokens import count_tokens

# [CLS] and [SEP]: what a BERT-family tokenizer adds to every text.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class ClassifyRequest:
    model: str | None
    texts: list[str]
    use_activation: bool


def parse_classify(body: bytes) -> ClassifyRequest:
    """The texts of a ``/classify`` request; RequestError (400) for what vLLM refuses."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the request body must be a JSON object")
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, "input must be a string or a non-empty list of strings", param="input")
    activation = data.get("use_activation")
    if activation is not None and not isinstance(activation, bool):
        raise RequestError(400, "use_activation must be a boolean", param="use_activation")
    model = data.get("model")
    return ClassifyRequest(model if isinstance(model, str) else None, texts, activation is not False)


def classify_body(model: str, texts: list[str], tokens: int, use_activation: bool) -> bytes:
    data = []
    for index, text in enumerate(texts):
        probs = score(text)
        values = probs if use_activation else [math.log(p) for p in probs]
        label = LABELS[max(range(len(probs)), key=probs.__getitem__)]
        data.append({"index": index, "label": label, "probs": values, "num_classes": len(values)})
    return orjson.dumps(
        {
            "id": "classify-" + secrets.token_hex(8),
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": data,
            "usage": {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }
    )


def text_tokens(texts: list[str], max_model_len: int) -> int:
    """Tokens of the call; RequestError (400) for a text past the context, as vLLM refuses it."""
    total = 0
    for text in texts:
        tokens = count_tokens(text) + SPECIAL_TOKENS
        if tokens > max_model_len:
            raise RequestError(
                400,
                f"This model's maximum context length is {max_model_len} tokens. "
                f"However, you requested {tokens} tokens in the input for "
                "classification. Please reduce the length of the input.",
            )
        total += tokens
    return total


class ClassifyEngine:
    """The GPU's schedule in real time: ``classify`` waits until its call's step is done."""

    def __init__(self, profile: ClassifierProfile, rng: random.Random) -> None:
        self._profile = profile
        self._rng = rng
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self.calls = 0
        self.texts = 0

    async def classify(self, texts: int, tokens: int) -> None:
        self.calls += 1
        self.texts += texts
        overhead = self._profile.overhead_time(self._rng)
        if overhead:
            await asyncio.sleep(overhead)
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((tokens, done))
        self._arrived.set()
        await done

    async def run(self) -> None:
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            taken = take_step([tokens for tokens, _ in self._waiting], self._profile.max_batch_tokens)
            step, self._waiting = self._waiting[:taken], self._waiting[taken:]
            seconds = self._profile.step_time(sum(tokens for tokens, _ in step), self._rng)
            if seconds:
                await asyncio.sleep(seconds)
            for _, done in step:
                if not done.done():
                    done.set_result(None)
