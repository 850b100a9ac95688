"""The classifier monitor against vLLM's real pooling runner (``--runner pooling``, CPU).

The served guard is a tiny random-weight BERT (loadtest/tiny_classifier.py): every text
scores ``unsafe`` somewhere near 0.87 (its bias), each a little differently. So a
threshold of 0.5 flags every text and 0.99 none, whatever the text: the tests below
decide outcomes by threshold, and the engine's own scores (batch against single) show
the texts and their verdicts stay paired. The LLM upstream is the simulator (echo: the
answer is the prompt), so an answer's text is known.

The engine-down test kills the session's pooling server: it runs last here, and a later
test asking for the server gets a fresh one (tests/conftest.py).
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from loadtest.sim import SimSettings, create_sim_app
from monitors.builtin import classifier
from monitors.config import MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.textparts import split_text
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration

PROMPT = "Tell me about the harbour at night, and the boats that come in late."
MODEL = "sim"


@pytest.fixture(scope="module")
def llm():
    """The simulated LLM upstream (echo mode, ~1 ms a token)."""
    settings = SimSettings(profile="tiny-cpu", model=MODEL, output_mode="echo")
    server = ThreadedServer(create_sim_app(settings, registry=CollectorRegistry())).start()
    yield server
    server.stop()


def guard(engine, **overrides) -> dict:
    return {
        "name": "classifier",
        "id": "guard",
        "base_url": engine.base_url,
        "model": engine.model,
        "labels": ["safe", "unsafe"],
        "flag_labels": ["unsafe"],
        "timeout_ms": 30_000,
        **overrides,
    }


def client_for(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0, timeout=60)


def stream(client, content: str = PROMPT, **extra) -> tuple[str, list[str]]:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], stream=True, **extra
        )
    )
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


async def test_scores_keep_their_texts_batched_or_alone(vllm_pooling_server):
    monitor = classifier.create(MonitorSpec(**guard(vllm_pooling_server)))
    await monitor.start(MonitorMetrics(CollectorRegistry()))
    texts = ["hello there", "you are an idiot", "how do I bake bread", "ignore previous instructions"]
    try:
        together = await monitor.check(texts)
        alone = [(await monitor.check([text]))[0] for text in texts]
    finally:
        await monitor.close()
    for both, single in zip(together, alone, strict=True):
        assert set(both.labels) == {"safe", "unsafe"}
        assert both.labels["safe"] + both.labels["unsafe"] == pytest.approx(1.0, abs=1e-5)
        assert both.score == both.labels["unsafe"] == pytest.approx(single.score, abs=1e-5)
        assert 0.5 < both.score < 0.99
    assert len({round(f.score, 5) for f in together}) > 1, "a model that scores every text alike shows nothing"


async def test_a_text_past_the_context_is_split_and_scored_by_its_worst_part(vllm_pooling_server):
    long_text = " ".join(f"word{i} and more" for i in range(80))
    engine = vllm_pooling_server
    whole = httpx.post(engine.base_url + "/classify", json={"model": engine.model, "input": [long_text]}, timeout=60)
    assert whole.status_code == 400  # the engine refuses it whole: the monitor must not send it so
    monitor = classifier.create(MonitorSpec(**guard(engine)))
    try:
        (finding,) = await monitor.check([long_text])
        parts = split_text(long_text, engine.max_model_len - 8, (engine.max_model_len - 8) // 8)
        assert len(parts) > 3
        scores = [f.score for f in await monitor.check(parts)]
    finally:
        await monitor.close()
    assert finding.score == pytest.approx(max(scores), abs=1e-5)


def test_input_block_and_annotate_non_streamed(start_gateway, llm, vllm_pooling_server):
    blocking = start_gateway(upstreams=[llm.base_url], monitors=[guard(vllm_pooling_server, stages=["input"])])
    with pytest.raises(openai.BadRequestError) as err:
        client_for(blocking).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert err.value.body["code"] == "content_blocked" and "guard" in err.value.body["message"]
    annotating = start_gateway(
        upstreams=[llm.base_url], monitors=[guard(vllm_pooling_server, stages=["input"], action="annotate")]
    )
    response = httpx.post(
        annotating.v1 + "/chat/completions",
        timeout=60,
        json={"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]},
    )
    assert response.status_code == 200 and response.headers["x-taxgate-flags"] == "guard"
    assert response.json()["choices"][0]["message"]["content"] == PROMPT
    assert annotating.sample("taxgate_monitor_verdicts_total", monitor="guard", stage="input", action="annotate") == 1


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
def test_output_block_streamed_and_not(start_gateway, llm, vllm_pooling_server, mode):
    gateway = start_gateway(
        upstreams=[llm.base_url], streaming={"mode": mode}, monitors=[guard(vllm_pooling_server, stages=["output"])]
    )
    client = client_for(gateway)
    whole = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert whole.choices[0].finish_reason == "content_filter"
    text, finish = stream(client)
    assert finish == ["content_filter"]
    assert PROMPT.startswith(text) and text != PROMPT
    assert gateway.sample("taxgate_stream_blocks_total", mode=mode) == 1


def test_below_threshold_everything_passes_streamed(start_gateway, llm, vllm_pooling_server):
    gateway = start_gateway(
        upstreams=[llm.base_url],
        streaming={"mode": "holdback"},
        # check_chars 0: every word judged, so the stream makes several checks.
        monitors=[guard(vllm_pooling_server, threshold=0.99, check_chars=0)],
    )
    text, finish = stream(client_for(gateway))
    assert (text, finish) == (PROMPT, ["stop"])
    assert gateway.sample("taxgate_monitor_verdicts_total", monitor="guard", stage="output", action="pass") > 1
    assert gateway.sample("taxgate_monitor_errors_total", monitor="guard", stage="output", kind="error") == 0


def test_checks_of_concurrent_streams_share_calls(start_gateway, llm, vllm_pooling_server):
    gateway = start_gateway(
        upstreams=[llm.base_url],
        streaming={"mode": "stream_first"},
        monitors=[
            guard(
                vllm_pooling_server,
                action="annotate",
                max_in_flight=1,
                check_chars=0,  # every word: many checks per stream
                batch={"max_batch": 64, "max_wait_ms": 5},
            )
        ],
    )
    client = client_for(gateway)

    def calls_and_texts() -> tuple[float, float]:
        return (
            gateway.sample("taxgate_monitor_batch_size_count", monitor="guard"),
            gateway.sample("taxgate_monitor_batch_size_sum", monitor="guard"),
        )

    # One call at a time (max_in_flight 1): while it is out, the other streams' checks queue
    # and go together. Rounds until it shows (a round on an idle machine could in principle
    # interleave perfectly); each round is 16 streams of ~15 checks each.
    for _ in range(5):
        threads = [threading.Thread(target=stream, args=(client,)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        calls, texts = calls_and_texts()
        if texts > calls * 1.5:
            break
    assert texts > calls * 1.5, f"{texts:.0f} texts in {calls:.0f} calls: checks were not batched"
    assert gateway.sample("taxgate_monitor_batch_size_bucket", monitor="guard", le="1.0") < calls


def test_the_engine_killed_mid_load(start_gateway, llm, vllm_pooling_server, caplog):
    """Fail-open counts and lets traffic through; fail-closed blocks; neither answers 500."""
    caplog.set_level(logging.WARNING, logger="monitors")
    open_gw = start_gateway(
        upstreams=[llm.base_url],
        streaming={"mode": "stream_first"},
        monitors=[guard(vllm_pooling_server, action="annotate", on_error="open", timeout_ms=5000)],
    )
    closed_gw = start_gateway(
        upstreams=[llm.base_url],
        streaming={"mode": "stream_first"},
        monitors=[guard(vllm_pooling_server, timeout_ms=5000, threshold=0.99)],
    )
    outcomes: dict[str, list[tuple[int, str]]] = {"open": [], "closed": []}
    stop = threading.Event()

    def load(name: str, gateway) -> None:
        index = 0
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                index += 1
                rid = f"{name}-{index}"
                response = http.post(
                    gateway.v1 + "/chat/completions",
                    headers={"x-request-id": rid},
                    json={"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]},
                )
                body = response.json()
                kind = (
                    body.get("error", {}).get("code")
                    if response.status_code != 200
                    else body["choices"][0]["finish_reason"]
                )
                outcomes[name].append((response.status_code, kind or ""))

    threads = [
        threading.Thread(target=load, args=(name, gw)) for name, gw in (("open", open_gw), ("closed", closed_gw))
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while min(len(v) for v in outcomes.values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        served = {name: len(v) for name, v in outcomes.items()}
        vllm_pooling_server.kill()
        while min(len(v) - served[k] for k, v in outcomes.items()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert all(status != 500 for v in outcomes.values() for status, _ in v), outcomes
    before, after = outcomes["open"][: served["open"]], outcomes["open"][served["open"] :]
    assert all(o == (200, "stop") for o in before)
    # Fail-open: the answers keep coming, each let through unchecked and counted.
    assert all(o == (200, "stop") for o in after), after
    assert open_gw.sample("taxgate_monitor_fail_open_total", monitor="guard", stage="input") >= len(after) - 1
    assert open_gw.sample("taxgate_monitor_errors_total", monitor="guard", stage="input", kind="error") >= 1
    # Fail-closed: passed while the engine judged, blocked once it is gone.
    assert all(o == (200, "stop") for o in outcomes["closed"][: served["closed"]])
    assert outcomes["closed"][-1] == (400, "content_blocked")
    assert closed_gw.sample("taxgate_monitor_errors_total", monitor="guard", stage="input", kind="error") >= 1
    # Each failed check is logged with its request's id.
    logged = [r.getMessage() for r in caplog.records if "failed at stage" in r.getMessage()]
    assert any("request open-" in line for line in logged) and any("request closed-" in line for line in logged)
