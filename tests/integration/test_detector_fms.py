"""The detector monitor (FMS Detectors API client) through the real gateway.

No FMS detector runs here, so the engine is a stand-in, named so: a small server that
speaks the Detectors API's ``/api/v1/text/contents`` (the ``detector-id`` header, a
``contents`` list, a list of detections per text with ``start``/``end``) and detects
e-mail addresses with a regex. What is under test is the client: batching, spans that
``redact`` masks, errors that follow ``on_error``.
"""

from __future__ import annotations

import re
import threading

import openai
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from loadtest.sim import SimSettings, create_sim_app
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
MODEL = "sim"
PROMPT = "Write to ada@example.org or to bob@example.net about the harbour."


def fms_standin(calls: list[dict]) -> Starlette:
    """A stand-in FMS detector (no real one runs here): e-mail addresses, score 0.99."""

    async def contents(request: Request) -> JSONResponse:
        detector = request.headers.get("detector-id")
        body = await request.json()
        calls.append({"detector": detector, "contents": body["contents"]})
        if detector != "email-v1":
            return JSONResponse({"code": 404, "message": f"detector {detector} not found"}, status_code=404)
        return JSONResponse(
            [
                [
                    {
                        "start": m.start(),
                        "end": m.end(),
                        "text": m.group(),
                        "detection": "pii",
                        "detection_type": "EmailAddress",
                        "score": 0.99,
                    }
                    for m in EMAIL.finditer(text)
                ]
                for text in body["contents"]
            ]
        )

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/api/v1/text/contents", contents, methods=["POST"]), Route("/health", health)])


@pytest.fixture(scope="module")
def detector_server():
    calls: list[dict] = []
    server = ThreadedServer(fms_standin(calls)).start()
    server.calls = calls
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm():
    server = ThreadedServer(
        create_sim_app(SimSettings(profile="tiny-cpu", model=MODEL), registry=CollectorRegistry())
    ).start()
    yield server
    server.stop()


def detector(server, **overrides) -> dict:
    return {
        "name": "detector",
        "id": "emails",
        "base_url": server.base_url,
        "detector_id": "email-v1",
        "timeout_ms": 10_000,
        **overrides,
    }


def client_for(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0, timeout=60)


EXPECTED = PROMPT.replace("ada@example.org", "[REDACTED:EMAILADDRESS]").replace(
    "bob@example.net", "[REDACTED:EMAILADDRESS]"
)


@pytest.mark.parametrize("mode", ["holdback", "stream_first"])
def test_detections_are_redacted_streamed_and_not(start_gateway, llm, detector_server, mode):
    gateway = start_gateway(
        upstreams=[llm.base_url],
        streaming={"mode": mode},
        monitors=[detector(detector_server, stages=["output"], action="redact")],
    )
    client = client_for(gateway)
    whole = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert whole.choices[0].message.content == EXPECTED
    if mode == "holdback":  # stream_first releases before it judges: nothing to mask then
        chunks = client.chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": PROMPT}]
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED
    assert all(call["detector"] == "email-v1" for call in detector_server.calls)


def test_input_block_and_concurrent_requests_share_calls(start_gateway, llm, detector_server):
    gateway = start_gateway(
        upstreams=[llm.base_url],
        monitors=[
            detector(detector_server, stages=["input"], max_in_flight=1, batch={"max_batch": 32, "max_wait_ms": 20})
        ],
    )
    client = client_for(gateway)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert err.value.body["code"] == "content_blocked"
    clean = [f"a clean question number {i}" for i in range(12)]
    threads = [
        threading.Thread(
            target=client.chat.completions.create,
            kwargs={"model": MODEL, "messages": [{"role": "user", "content": text}]},
        )
        for text in clean
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    sent = [text for call in detector_server.calls for text in call["contents"] if text in clean]
    assert sorted(sent) == sorted(clean)  # every text judged once
    # The batch-size metric counts exactly the calls the detector saw, and their texts.
    calls = gateway.sample("taxgate_monitor_batch_size_count", monitor="emails")
    assert calls == len([c for c in detector_server.calls if set(c["contents"]) & set(clean)]) + 1
    assert gateway.sample("taxgate_monitor_batch_size_sum", monitor="emails") == len(clean) + 1


@pytest.mark.parametrize("on_error, blocked", [("open", False), ("closed", True)])
def test_an_unknown_detector_is_a_monitor_error(start_gateway, llm, detector_server, on_error, blocked):
    gateway = start_gateway(
        upstreams=[llm.base_url],
        monitors=[detector(detector_server, detector_id="missing", stages=["input"], on_error=on_error)],
    )
    client = client_for(gateway)
    if blocked:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    else:
        assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).choices
        assert gateway.sample("taxgate_monitor_fail_open_total", monitor="emails", stage="input") == 1
    assert gateway.sample("taxgate_monitor_errors_total", monitor="emails", stage="input", kind="error") == 1
