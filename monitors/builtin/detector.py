"""Detector: any detector behind the FMS Detectors API (TrustyAI's detector runtime,
vllm-detector-adapter, KServe detectors: what the FMS guardrails orchestrator calls).

Options::

    base_url: http://hap-detector:8000
    detector_id: ibm-hap-38m-detector      # sent as the ``detector-id`` header
    api_key: ...                           # optional, sent as a Bearer token
    detector_params: {}                    # passed through to the detector
    flag_types: null                       # detection types that count (null: all)
    max_in_flight: 4                       # calls out at once (monitors/callbatcher.py)

One call, ``POST {base_url}/api/v1/text/contents`` with ``{"contents": [texts...]}``,
answers per text a list of detections (``start``, ``end``, ``text``, ``detection``,
``detection_type``, ``score``). A text's score is the highest of its counted
detections, each ``detection_type`` is a label, and each detection's characters are a
span, so ``action: redact`` masks exactly what the detector found (streams hold the
trailing run of non-space characters, so a span is judged whole). Texts of concurrent
checks share calls (up to ``batch.max_batch``). A detector that answers the wrong shape
(fewer lists than texts, a span outside its text, a score that is not a probability)
is a monitor error, decided by ``on_error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from monitors.base import AsyncMonitor, Finding, Span
from monitors.builtin.engine import Engine, EngineError, probability
from monitors.callbatcher import CallBatcher
from monitors.config import BatchSpec, MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.registry import parse_options

CONTENTS_PATH = "/api/v1/text/contents"


class DetectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    detector_id: str = Field(min_length=1)
    api_key: str | None = None
    detector_params: dict[str, Any] = Field(default_factory=dict)
    flag_types: list[str] | None = None
    max_in_flight: int = Field(4, ge=1)


def _detection(item: Any, text: str, where: str) -> tuple[str, float, Span | None]:
    """(label, score, span or None) of one detection."""
    if not isinstance(item, dict):
        raise EngineError(f"{where} is not an object")
    label = item.get("detection_type") or item.get("detection")
    if not isinstance(label, str):
        raise EngineError(f"{where} has no detection_type")
    score = probability(item.get("score"), where)
    start, end = item.get("start"), item.get("end")
    if start is None and end is None:
        return label, score, None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not 0 <= start < end <= len(
        text
    ):
        raise EngineError(f"{where}: span {start!r}..{end!r} is not within its text")
    return label, score, Span(start, end, label)


def parse_contents(body: Any, texts: Sequence[str], flag_types: Sequence[str] | None) -> list[Finding]:
    """One Finding per text from a ``/api/v1/text/contents`` answer; EngineError on a wrong shape."""
    if not isinstance(body, list):
        raise EngineError("detector answer is not a list")
    if len(body) != len(texts):
        raise EngineError(f"detector answered {len(body)} results for {len(texts)} texts")
    findings = []
    for index, (detections, text) in enumerate(zip(body, texts, strict=True)):
        if not isinstance(detections, list):
            raise EngineError(f"detector result {index} is not a list")
        labels: dict[str, float] = {}
        spans: list[Span] = []
        for number, item in enumerate(detections):
            label, score, span = _detection(item, text, f"detector result {index}, detection {number}")
            if flag_types is not None and label not in flag_types:
                continue
            labels[label] = max(score, labels.get(label, 0.0))
            if span is not None:
                spans.append(span)
        findings.append(Finding(score=max(labels.values(), default=0.0), labels=labels, spans=tuple(spans)))
    return findings


class DetectorMonitor(AsyncMonitor):
    """Scores texts with an FMS-API detector; see the module doc."""

    def __init__(self, options: DetectorOptions, engine: Engine, *, name: str, batch: BatchSpec) -> None:
        self._options = options
        self._engine = engine
        self._headers = {"detector-id": options.detector_id}
        self._batcher: CallBatcher[Finding] = CallBatcher(
            self._detect, batch, name=name, max_in_flight=options.max_in_flight
        )

    async def start(self, metrics: MonitorMetrics) -> None:
        self._batcher.observe(metrics)

    def hold(self, text: str, start: int = 0) -> int:
        """Streaming: the trailing run of non-space characters. A detector's span (an e-mail
        address, a key) can end in a full stop and go on (``ada@example.`` + ``org``), so
        words end at whitespace only; spans that cross spaces need ``stream_hold: sentence``."""
        position = len(text)
        while position > start and not text[position - 1].isspace():
            position -= 1
        return max(start, position)

    async def check(self, texts: Sequence[str]) -> list[Finding]:
        return await self._batcher.submit(texts)

    async def _detect(self, texts: list[str]) -> list[Finding]:
        body = {"contents": texts, "detector_params": self._options.detector_params}
        answer = await self._engine.post(CONTENTS_PATH, body, headers=self._headers)
        return parse_contents(answer, texts, self._options.flag_types)

    async def close(self) -> None:
        await self._batcher.close()
        await self._engine.aclose()


def create(spec: MonitorSpec, *, transport: httpx.AsyncBaseTransport | None = None) -> DetectorMonitor:
    options = parse_options(spec, DetectorOptions)
    engine = Engine(
        options.base_url,
        timeout_s=spec.timeout_ms / 1000.0 + 1.0,
        max_connections=options.max_in_flight,
        api_key=options.api_key,
        transport=transport,
    )
    return DetectorMonitor(options, engine, name=spec.id, batch=spec.batch)
