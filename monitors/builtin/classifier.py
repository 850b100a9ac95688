"""Classifier: a guard model served by vLLM's pooling runner, over its ``/classify`` API.

Options::

    base_url: http://guard:8000          # the vLLM server (``vllm serve MODEL --runner pooling``)
    model: toxic-bert                    # its served model name
    api_key: ...                         # optional, sent as a Bearer token
    labels: [toxic, severe_toxic, obscene, threat, insult, identity_hate]
                                         # the model's id2label, in index order
    flag_labels: [toxic, threat]         # the harmful ones: the score is the highest of them
    activation: server                   # server | sigmoid | softmax (see below)
    max_input_tokens: null               # the model's context; null: asked of the server
    max_in_flight: 4                     # calls out at once (see monitors/callbatcher.py)
    check_chars: 64                      # streams: judge new words in groups this long

``/classify`` answers, per text, the probabilities in the model's label order and the
name of the likeliest label (``id2label``), but not the names of the others, so
``labels`` lists them (copy ``id2label`` from the model's ``config.json``). Each answer's
label is checked against that list: a list that does not match the served model is a
monitor error, not a verdict on the wrong label.

``activation``: vLLM applies the model's own activation (``server``): a sigmoid per
label when the model's config says ``problem_type: multi_label_classification``,
otherwise a softmax over the labels. Multi-label models (toxic-bert, Detoxify's) must
be scored with a sigmoid; where the served config does not say so, either serve it with
``--hf-overrides '{"problem_type": "multi_label_classification"}'`` or set ``activation:
sigmoid`` here, which asks for the raw logits (``use_activation: false``) and applies the
sigmoid in the gateway (``softmax`` likewise).

A text longer than the model's context is split (monitors/textparts.py), every part is
scored, and each label keeps its highest probability over the parts: never truncated.
Texts of concurrent checks go out together, up to the monitor's ``batch.max_batch`` texts
per call (monitors/callbatcher.py). A stream's new words are judged in groups of at least
``check_chars`` characters (its hold), so a stream makes one check per clause rather than
one per token: each check is a share of an engine call, which costs the gateway CPU (the
call's bytes, a wake-up, the verdict's bookkeeping: ~0.1 ms at 64 streams) and the engine
a batch slot whatever the text's length, and a guard model reads a clause better than a
fragment. 64 characters is ~16 tokens: what may leave before a cut under ``stream_first``
(the check runs behind), and the hold under ``holdback`` (lower it there for a shorter
first token; 0 judges every word).

Every failure (refused, reset, stalled, an HTTP error, a wrong shape: fewer results, an
unknown label, NaN) raises, so the monitor's ``on_error`` decides.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitors.base import AsyncMonitor, Finding, MonitorLoadError
from monitors.builtin.engine import Engine, EngineError, finite, probability
from monitors.callbatcher import CallBatcher
from monitors.config import BatchSpec, MonitorSpec
from monitors.holds import word_group_hold
from monitors.metrics import MonitorMetrics
from monitors.registry import parse_options
from monitors.textparts import split_text

MODELS_PATH = "/v1/models"
# Tokens of a part's budget kept for the special tokens a tokenizer adds ([CLS], [SEP], ...).
_SPECIAL_TOKENS = 8
# Consecutive parts of a long text share this share of a part, so a phrase at a cut is read whole.
_OVERLAP_SHARE = 8


class ClassifierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key: str | None = None
    labels: list[str] = Field(min_length=1)
    flag_labels: list[str] = Field(min_length=1)
    activation: Literal["server", "sigmoid", "softmax"] = "server"
    max_input_tokens: int | None = Field(None, ge=_SPECIAL_TOKENS + 4)
    max_in_flight: int = Field(4, ge=1)
    check_chars: int = Field(64, ge=0)

    @model_validator(mode="after")
    def _known_flags(self) -> ClassifierOptions:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = [label for label in self.flag_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"flag_labels {unknown} are not in labels {self.labels}")
        return self


def _activate(values: list[float], activation: str) -> list[float]:
    if activation == "sigmoid":
        return [1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)) for v in values]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _item(item: Any, count: int, labels: Sequence[str], activation: str) -> tuple[int, list[float]]:
    if not isinstance(item, dict):
        raise EngineError("a /classify result is not an object")
    index, probs, label = item.get("index"), item.get("probs"), item.get("label")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise EngineError(f"/classify result index {index!r} is not one of the {count} texts")
    if not isinstance(probs, list) or len(probs) != len(labels):
        got = len(probs) if isinstance(probs, list) else type(probs).__name__
        raise EngineError(f"/classify result has {got} probabilities; the monitor knows {len(labels)} labels")
    if item.get("num_classes", len(probs)) != len(probs):
        raise EngineError("/classify result's num_classes differs from its probabilities")
    where = f"/classify result {index}"
    if activation == "server":
        values = [probability(p, where) for p in probs]
    else:
        values = _activate([finite(p, where) for p in probs], activation)
    if label is not None:
        top = max(values)
        if label not in labels:
            raise EngineError(f"/classify labelled a text {label!r}, not one of the configured labels")
        if values[labels.index(label)] < top - 1e-6:
            raise EngineError(
                f"/classify's label {label!r} is not its likeliest class: "
                "the configured labels do not match the served model"
            )
    return index, values


def parse_classify(body: Any, count: int, labels: Sequence[str], activation: str) -> list[list[float]]:
    """Per text sent, its probabilities in ``labels`` order; EngineError on any wrong shape."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise EngineError("/classify answer has no data list")
    if len(data) != count:
        raise EngineError(f"/classify answered {len(data)} results for {count} texts")
    results: list[list[float] | None] = [None] * count
    for item in data:
        index, values = _item(item, count, labels, activation)
        if results[index] is not None:
            raise EngineError(f"/classify answered index {index} twice")
        results[index] = values
    return results  # type: ignore[return-value]  # every index was filled exactly once


class ClassifierMonitor(AsyncMonitor):
    """Scores texts with a served sequence classifier; see the module doc."""

    def __init__(self, options: ClassifierOptions, engine: Engine, *, name: str, batch: BatchSpec) -> None:
        self._options = options
        self._engine = engine
        self._flag_indices = [options.labels.index(label) for label in options.flag_labels]
        self._batcher: CallBatcher[list[float]] = CallBatcher(
            self._classify, batch, name=name, max_in_flight=options.max_in_flight
        )
        self._max_tokens = options.max_input_tokens
        self._context_lock = asyncio.Lock()

    async def start(self, metrics: MonitorMetrics) -> None:
        self._batcher.observe(metrics)

    def hold(self, text: str, start: int = 0) -> int:
        """The partial word, and new complete words until there are ``check_chars`` of them."""
        return word_group_hold(text, start, self._options.check_chars)

    @property
    def min_new_chars(self) -> int:
        return self._options.check_chars

    async def check(self, texts: Sequence[str]) -> list[Finding]:
        budget = await self._part_bytes()
        parts = [split_text(text, budget, budget // _OVERLAP_SHARE) if text.strip() else [] for text in texts]
        vectors = await self._batcher.submit([part for text_parts in parts for part in text_parts])
        findings: list[Finding] = []
        position = 0
        for text_parts in parts:
            scored = vectors[position : position + len(text_parts)]
            position += len(text_parts)
            findings.append(self._finding(scored))
        return findings

    def _finding(self, vectors: list[list[float]]) -> Finding:
        if not vectors:  # an empty text: nothing to judge
            return Finding(score=0.0)
        highest = [max(column) for column in zip(*vectors, strict=True)]
        labels = dict(zip(self._options.labels, highest, strict=True))
        return Finding(score=max(highest[i] for i in self._flag_indices), labels=labels)

    async def _classify(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self._options.model, "input": texts}
        if self._options.activation != "server":
            body["use_activation"] = False
        answer = await self._engine.post("/classify", body)
        return parse_classify(answer, len(texts), self._options.labels, self._options.activation)

    async def _part_bytes(self) -> int:
        """The UTF-8 bytes one part may have: the model's context less its special tokens."""
        if self._max_tokens is None:
            async with self._context_lock:
                if self._max_tokens is None:
                    self._max_tokens = await self._served_context()
        return self._max_tokens - _SPECIAL_TOKENS

    async def _served_context(self) -> int:
        answer = await self._engine.get(MODELS_PATH)
        models = answer.get("data") if isinstance(answer, dict) else None
        where = self._engine.base_url + MODELS_PATH
        if not isinstance(models, list):
            raise EngineError(f"{where} answered no model list")
        for model in models:
            if isinstance(model, dict) and model.get("id") == self._options.model:
                length = model.get("max_model_len")
                if isinstance(length, int) and not isinstance(length, bool) and length > _SPECIAL_TOKENS + 4:
                    return length
                raise EngineError(
                    f"{where} gives model {self._options.model!r} no usable max_model_len; set max_input_tokens"
                )
        raise EngineError(f"model {self._options.model!r} is not served at {where}")

    async def close(self) -> None:
        await self._batcher.close()
        await self._engine.aclose()


def create(spec: MonitorSpec, *, transport: httpx.AsyncBaseTransport | None = None) -> ClassifierMonitor:
    options = parse_options(spec, ClassifierOptions)
    unknown = sorted(set(spec.label_thresholds) - set(options.labels))
    if unknown:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: label_thresholds name {unknown}, which are not in labels {options.labels}"
        )
    # vLLM serves /classify and /v1/models at the root; a base_url ending in /v1 means the same.
    engine = Engine(
        options.base_url.rstrip("/").removesuffix("/v1"),
        timeout_s=spec.timeout_ms / 1000.0 + 1.0,
        max_connections=options.max_in_flight,
        api_key=options.api_key,
        transport=transport,
    )
    return ClassifierMonitor(options, engine, name=spec.id, batch=spec.batch)
