"""The detector monitor's reading of FMS Detectors API answers (httpx.MockTransport engine)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from monitors.base import Span
from monitors.builtin import detector
from monitors.builtin.detector import parse_contents
from monitors.builtin.engine import EngineError
from monitors.config import MonitorSpec


def detection(text: str, word: str, kind: str = "EMAIL", score: float = 0.9) -> dict:
    start = text.index(word)
    return {
        "start": start,
        "end": start + len(word),
        "text": word,
        "detection": "pii",
        "detection_type": kind,
        "score": score,
    }


class Detector:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/text/contents"
        body = json.loads(request.content)
        self.calls.append({**body, "detector_id": request.headers.get("detector-id")})
        return httpx.Response(200, json=[[detection(t, "a@b.io")] if "a@b.io" in t else [] for t in body["contents"]])


@pytest.fixture
async def make():
    built = []

    def build(engine, **options):
        spec = MonitorSpec(
            name="detector", base_url="http://det:8000/", detector_id="pii-v1", timeout_ms=5000, **options
        )
        monitor = detector.create(spec, transport=httpx.MockTransport(engine))
        built.append(monitor)
        return monitor

    yield build
    for monitor in built:
        await monitor.close()


async def test_detections_become_scores_labels_and_spans(make):
    engine = Detector()
    monitor = make(engine, detector_params={"threshold": 0.5})
    clean, hit = await monitor.check(["nothing here", "mail a@b.io now"])
    assert clean.score == 0.0 and clean.spans == ()
    assert hit.score == 0.9 and dict(hit.labels) == {"EMAIL": 0.9}
    assert hit.spans == (Span(5, 11, "EMAIL"),)
    assert engine.calls == [
        {
            "contents": ["nothing here", "mail a@b.io now"],
            "detector_params": {"threshold": 0.5},
            "detector_id": "pii-v1",
        }
    ]


async def test_concurrent_checks_share_a_call(make):
    engine = Detector()
    monitor = make(engine, batch={"max_batch": 16, "max_wait_ms": 50})
    await asyncio.gather(*(monitor.check([f"t{i}"]) for i in range(6)))
    assert [len(call["contents"]) for call in engine.calls] == [6]


def test_flag_types_leave_other_detections_out():
    text = "mail a@b.io, call 555"
    body = [[detection(text, "a@b.io"), detection(text, "555", "PHONE", 0.7)]]
    (finding,) = parse_contents(body, [text], ["PHONE"])
    assert finding.score == 0.7 and finding.spans == (Span(18, 21, "PHONE"),)


def test_a_whole_text_detection_without_span_has_a_score_only():
    (finding,) = parse_contents([[{"detection": "hap", "detection_type": "LABEL_1", "score": 0.8}]], ["x"], None)
    assert finding.score == 0.8 and finding.spans == ()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"detections": []}, "not a list"),
        ([[]], "1 results for 2 texts"),
        ([[], {"x": 1}], "not a list"),
        ([[], [{"detection_type": "X", "score": 2.0, "start": 0, "end": 1}]], "not a probability"),
        ([[], [{"detection_type": "X", "score": 0.5, "start": 0, "end": 99}]], "not within its text"),
        ([[], [{"detection_type": "X", "score": 0.5, "start": 2, "end": 2}]], "not within its text"),
        ([[], [{"score": 0.5}]], "no detection_type"),
        ([[], ["hit"]], "not an object"),
    ],
)
def test_wrong_shapes_raise(body, message):
    with pytest.raises(EngineError, match=message):
        parse_contents(body, ["one", "two"], None)


async def test_http_errors_raise(make):
    monitor = make(lambda request: httpx.Response(404, json={"detail": "unknown detector"}))
    with pytest.raises(EngineError, match="HTTP 404"):
        await monitor.check(["hi"])


def test_streams_hold_the_trailing_run_of_non_space_characters():
    monitor = detector.create(MonitorSpec(name="detector", base_url="http://x", detector_id="d"))
    assert monitor.hold("write to ada@example.") == len("write to ")
    assert monitor.hold("write to ada@example.org ") == len("write to ada@example.org ")
    assert monitor.hold("write to", start=6) == 6
