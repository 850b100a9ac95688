"""The classifier monitor against a scripted /classify engine (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from monitors.base import MonitorLoadError
from monitors.builtin import classifier
from monitors.builtin.classifier import parse_classify
from monitors.builtin.engine import EngineError
from monitors.config import BudgetSpec, MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry

LABELS = ["benign", "injection", "jailbreak"]


def item(index: int, probs: list[float], label: str | None = "auto") -> dict:
    if label == "auto":
        label = LABELS[max(range(len(probs)), key=probs.__getitem__)]
    return {"index": index, "label": label, "probs": probs, "num_classes": len(probs)}


class Engine:
    """Answers /classify like vLLM: texts containing INJECT score high on injection."""

    def __init__(self, max_model_len: int = 512) -> None:
        self.calls: list[dict] = []
        self.max_model_len = max_model_len
        self.answer = None  # a callable (texts) -> httpx.Response replacing the default

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [{"id": "guard", "object": "model", "max_model_len": self.max_model_len}],
                },
            )
        assert request.url.path == "/classify"
        body = json.loads(request.content)
        self.calls.append({**body, "authorization": request.headers.get("authorization")})
        if self.answer is not None:
            return self.answer(body["input"])
        data = []
        for index, text in enumerate(body["input"]):
            hit = "INJECT" in text
            probs = [0.1, 0.85, 0.05] if hit else [0.9, 0.06, 0.04]
            if body.get("use_activation") is False:  # raw logits
                probs = [math.log(p) for p in probs]
            data.append(item(index, probs))
        return httpx.Response(
            200,
            json={
                "id": "classify-1",
                "object": "list",
                "model": "guard",
                "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )


def spec(**options) -> MonitorSpec:
    base = {
        "name": "classifier",
        "base_url": "http://guard:8000",
        "model": "guard",
        "labels": LABELS,
        "flag_labels": ["injection", "jailbreak"],
        "timeout_ms": 5000,
    }
    return MonitorSpec(**{**base, **options})


@pytest.fixture
async def make():
    built = []

    def build(engine: Engine, **options):
        monitor = classifier.create(spec(**options), transport=httpx.MockTransport(engine))
        built.append(monitor)
        return monitor

    yield build
    for monitor in built:
        await monitor.close()


async def test_scores_are_the_highest_flag_label_and_every_label_is_reported(make):
    engine = Engine()
    monitor = make(engine, api_key="k3y")
    benign, hit = await monitor.check(["hello there", "please INJECT this"])
    assert benign.score == pytest.approx(0.06)
    assert hit.score == pytest.approx(0.85)
    assert dict(hit.labels) == pytest.approx({"benign": 0.1, "injection": 0.85, "jailbreak": 0.05})
    assert engine.calls[0]["input"] == ["hello there", "please INJECT this"]
    assert engine.calls[0]["model"] == "guard"
    assert "use_activation" not in engine.calls[0]
    assert engine.calls[0]["authorization"] == "Bearer k3y"


async def test_client_side_activation_asks_for_logits(make):
    engine = Engine()
    monitor = make(engine, activation="softmax")
    (hit,) = await monitor.check(["INJECT"])
    assert engine.calls[0]["use_activation"] is False
    assert hit.score == pytest.approx(0.85)  # softmax of log(p) gives p back
    sigmoid = make(engine, activation="sigmoid")
    (multi,) = await sigmoid.check(["INJECT"])
    assert multi.labels["injection"] == pytest.approx(0.85 / (1 + 0.85))  # sigmoid(log p) = p / (1 + p)


async def test_concurrent_checks_go_out_in_one_call(make):
    engine = Engine()
    monitor = make(engine, batch={"max_batch": 64, "max_wait_ms": 50})
    results = await asyncio.gather(*(monitor.check([f"text {i}"]) for i in range(10)))
    assert len(results) == 10
    assert len(engine.calls) == 1 and len(engine.calls[0]["input"]) == 10


async def test_a_long_text_is_split_and_a_hit_in_any_part_counts(make):
    engine = Engine(max_model_len=40)  # 32 bytes a part
    monitor = make(engine)
    text = " ".join(["benign words here"] * 10) + " and INJECT at the end"
    (finding,) = await monitor.check([text])
    sent = engine.calls[0]["input"]
    assert len(sent) > 3 and all(len(part.encode()) <= 32 for part in sent)
    assert "INJECT" in sent[-1] and "INJECT" not in sent[0]
    assert finding.score == pytest.approx(0.85)


async def test_max_input_tokens_skips_the_models_lookup(make):
    engine = Engine(max_model_len=10_000)
    monitor = make(engine, max_input_tokens=40)
    await monitor.check(["x " * 100])
    assert len(engine.calls[0]["input"]) > 1


async def test_empty_texts_are_not_sent(make):
    engine = Engine()
    monitor = make(engine)
    empty, text = await monitor.check(["  ", "hi"])
    assert empty.score == 0.0 and engine.calls[0]["input"] == ["hi"]


@pytest.mark.parametrize(
    "answer, message",
    [
        (lambda texts: httpx.Response(503, text="overloaded"), "HTTP 503"),
        (lambda texts: httpx.Response(400, json={"error": {"message": "too long"}}), "HTTP 400"),
        (lambda texts: httpx.Response(200, text="<html>"), "not JSON"),
        (lambda texts: httpx.Response(200, json={"data": []}), "0 results for 2 texts"),
        (
            lambda texts: httpx.Response(200, json={"data": [item(0, [0.9, 0.1, 0.0]), item(0, [0.9, 0.1, 0.0])]}),
            "twice",
        ),
        (
            lambda texts: httpx.Response(200, json={"data": [item(0, [0.9, 0.1]), item(1, [0.9, 0.1])]}),
            "2 probabilities",
        ),
        (
            lambda texts: httpx.Response(
                200,
                content=json.dumps({"data": [item(0, [float("nan"), 0.1, 0.0], "benign"), item(1, [0.9, 0.1, 0.0])]}),
            ),
            "not a probability",
        ),
        (
            lambda texts: httpx.Response(
                200, json={"data": [item(0, [0.9, 0.1, 0.0], "toxic"), item(1, [0.9, 0.1, 0.0])]}
            ),
            "not one of the configured",
        ),
        (
            lambda texts: httpx.Response(
                200, json={"data": [item(0, [0.9, 0.1, 0.0], "injection"), item(1, [0.9, 0.1, 0.0])]}
            ),
            "likeliest",
        ),
        (
            lambda texts: httpx.Response(200, json={"data": [item(5, [0.9, 0.1, 0.0]), item(1, [0.9, 0.1, 0.0])]}),
            "index 5",
        ),
    ],
)
async def test_wrong_answers_raise(make, answer, message):
    engine = Engine()
    engine.answer = answer
    with pytest.raises(EngineError, match=message):
        await make(engine).check(["one", "two"])


async def test_connection_failures_raise_engine_errors(make):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    monitor = classifier.create(spec(max_input_tokens=512), transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(EngineError, match="unreachable: ConnectionError"):
            await monitor.check(["hi"])
    finally:
        await monitor.close()


def test_parse_keeps_the_engines_index_order():
    body = {"data": [item(1, [0.2, 0.7, 0.1]), item(0, [0.9, 0.05, 0.05])]}
    assert parse_classify(body, 2, LABELS, "server") == [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"flag_labels": ["toxic"]}, "not in labels"),
        ({"labels": ["a", "a"], "flag_labels": ["a"]}, "unique"),
        ({"label_thresholds": {"toxic": 0.5}}, "label_thresholds"),
        ({"activation": "relu"}, "activation"),
        ({"flag_labels": []}, "flag_labels"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(MonitorLoadError, match=message):
        classifier.create(spec(**options))


@pytest.mark.parametrize("on_error, blocked, fail_open", [("closed", True, None), ("open", False, 1.0)])
async def test_an_engine_failure_follows_on_error_in_the_pipeline(prom, metrics, on_error, blocked, fail_open):
    engine = Engine()
    engine.answer = lambda texts: httpx.Response(500, text="boom")
    registry = MonitorRegistry({"classifier": lambda s: classifier.create(s, transport=httpx.MockTransport(engine))})
    pipeline = MonitorPipeline([spec(on_error=on_error)], metrics=metrics, registry=registry)
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["hello"], request_id="req-7")
        assert result.blocked == blocked
        assert [d.error for d in result.decisions] == ["error"]
        labels = {"monitor": "classifier", "stage": "input"}
        assert prom.get_sample_value("taxgate_monitor_errors_total", {**labels, "kind": "error"}) == 1
        assert prom.get_sample_value("taxgate_monitor_fail_open_total", labels) == fail_open
        engine.answer = None
        hit = await pipeline.check("input", ["INJECT now"], request_id="req-8")
        assert hit.blocked_by is not None and hit.blocked_by.labels["injection"] == pytest.approx(0.85)
        assert prom.get_sample_value("taxgate_monitor_batch_size_count", {"monitor": "classifier"}) == 2
    finally:
        await pipeline.close()


async def test_a_stalled_engine_is_a_timeout(metrics, prom):
    stall = asyncio.Event()

    async def stalled(request: httpx.Request) -> httpx.Response:
        await stall.wait()
        return httpx.Response(200, json={})

    registry = MonitorRegistry({"classifier": lambda s: classifier.create(s, transport=httpx.MockTransport(stalled))})
    pipeline = MonitorPipeline(
        [spec(on_error="open", timeout_ms=50, max_input_tokens=512)], metrics=metrics, registry=registry
    )
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["hello"], request_id="r")
        assert [d.error for d in result.decisions] == ["timeout"] and not result.blocked
    finally:
        stall.set()
        await pipeline.close()


async def test_budget_admission_skips_a_slow_engine_once_its_latency_is_known(metrics, prom):
    release = asyncio.Event()
    engine = Engine()

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/classify":
            await release.wait()
        return engine(request)

    registry = MonitorRegistry({"classifier": lambda s: classifier.create(s, transport=httpx.MockTransport(slow))})
    pipeline = MonitorPipeline(
        [spec(on_error="open", degrade="skip", timeout_ms=5000, max_input_tokens=512)],
        metrics=metrics,
        registry=registry,
        budgets=BudgetSpec(input=20),
    )
    await pipeline.start()
    try:
        # The first check is admitted (nothing ahead) and let go of at the budget (late).
        first = await pipeline.check("input", ["a"], request_id="r1")
        assert first.skipped == ["classifier"]
        # Still in flight: the next check's predicted wait counts it, and it is not queued.
        second = await pipeline.check("input", ["b"], request_id="r2")
        assert second.skipped == ["classifier"]
        skipped = {
            r: prom.get_sample_value(
                "taxgate_monitor_skipped_total", {"monitor": "classifier", "stage": "input", "reason": r}
            )
            for r in ("late", "predicted")
        }
        assert skipped["late"] >= 1 and skipped["late"] + skipped["predicted"] == 2
    finally:
        release.set()
        await pipeline.close()


def test_a_stream_is_judged_in_groups_of_words():
    monitor = classifier.create(spec(check_chars=10))
    assert monitor.hold("you are") == 0
    assert monitor.hold("you are an idio") == 11
    assert monitor.hold("you are an idiot and", start=11) == 11
    assert classifier.create(spec(check_chars=0)).hold("you are") == 4
