"""Judge: an LLM safety classifier (e.g. Llama Guard served by vLLM) over the OpenAI API.

Options::

    base_url: http://llama-guard:8000      # with or without the trailing /v1
    model: meta-llama/Llama-Guard-3-1B
    api_key: ...                           # optional, sent as a Bearer token
    prompt_template: "{text}"              # the user message; {text} is replaced
    max_tokens: 20

The default template sends the text alone: Llama Guard's own chat template wraps
it in the classification prompt. The answer must read ``safe``, or ``unsafe``
with an optional line of categories (``S1,S10``). Anything else raises
JudgeParseError, so the monitor's ``on_error`` decides, never a guess.

I/O-bound, so an AsyncMonitor: texts are sent concurrently on one pooled client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitors.base import AsyncMonitor, Finding
from monitors.config import MonitorSpec
from monitors.registry import parse_options

_CATEGORIES = re.compile(r"^S\d+(?:\s*,\s*S\d+)*$")
# Bytes of a bad answer quoted in the error: enough to recognise it, not a transcript.
_QUOTE_CHARS = 60


class JudgeParseError(ValueError):
    """The judge answered something other than the safe/unsafe protocol."""


class JudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key: str | None = None
    prompt_template: str = "{text}"
    max_tokens: int = Field(20, ge=1)
    temperature: float = Field(0.0, ge=0)

    @field_validator("prompt_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError("must contain {text}")
        return value


def parse_verdict(answer: str) -> Finding:
    """Read a Llama Guard answer: ``safe`` | ``unsafe`` [newline ``S1,S10``]."""
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    if not lines:
        raise JudgeParseError("judge returned an empty answer")
    verdict = lines[0].lower()
    if verdict == "safe" and len(lines) == 1:
        return Finding(score=0.0, labels={})
    if verdict == "unsafe" and len(lines) <= 2:
        categories: dict[str, float] = {}
        if len(lines) == 2:
            if not _CATEGORIES.match(lines[1]):
                raise JudgeParseError(f"judge categories line not understood: {lines[1][:_QUOTE_CHARS]!r}")
            categories = {c.strip(): 1.0 for c in lines[1].split(",")}
        return Finding(score=1.0, labels=categories)
    raise JudgeParseError(f"judge answer is not safe/unsafe: {answer[:_QUOTE_CHARS]!r}")


def completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class JudgeMonitor(AsyncMonitor):
    def __init__(self, options: JudgeOptions, client: httpx.AsyncClient) -> None:
        self._options = options
        self._client = client
        self._url = completions_url(options.base_url)

    async def check(self, texts: Sequence[str]) -> list[Finding]:
        return list(await asyncio.gather(*(self._judge(text) for text in texts)))

    async def _judge(self, text: str) -> Finding:
        # str.replace, not str.format: templates and texts may contain braces.
        prompt = self._options.prompt_template.replace("{text}", text)
        body = {
            "model": self._options.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self._options.max_tokens,
            "temperature": self._options.temperature,
        }
        response = await self._client.post(self._url, json=body)
        response.raise_for_status()
        try:
            answer = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeParseError(f"judge response is not a chat completion: {exc!r}") from exc
        return parse_verdict(answer or "")

    async def close(self) -> None:
        await self._client.aclose()


def create(spec: MonitorSpec) -> JudgeMonitor:
    options = parse_options(spec, JudgeOptions)
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    # The pipeline's timeout_ms bounds the whole check; the client's timeout is only a backstop
    # so a connection never outlives the check that started it by much.
    client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(spec.timeout_ms / 1000.0 + 1.0))
    return JudgeMonitor(options, client)
