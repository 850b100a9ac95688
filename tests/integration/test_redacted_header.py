"""The gateway tells a client its text was redacted: ``x-taxgate-redacted`` and, on streams,
the final event's ``taxgate_redacted``. The simulator answers random words, so an input
redaction cannot show in the answer: only the header says it."""

from __future__ import annotations

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from loadtest.sim import SimSettings, create_sim_app
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration

SAID = "Write to bob@example.com about the harbour"


@pytest.fixture
def sim():
    app = create_sim_app(
        SimSettings(profile="instant", model="sim", output_mode="random"), registry=CollectorRegistry()
    )
    server = ThreadedServer(app).start()
    yield server
    server.stop()


def chat(gateway, stream: bool) -> httpx.Response:
    return httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=30,
        json={"model": "sim", "max_tokens": 8, "stream": stream, "messages": [{"role": "user", "content": SAID}]},
    )


def final_chunk(body: bytes) -> dict:
    events = [block[6:] for block in body.split(b"\n\n") if block.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    return orjson.loads(events[-2])


def test_an_input_redaction_is_told_in_the_header_whole_and_streamed(start_gateway, sim):
    gateway = start_gateway(
        upstreams=[sim.base_url],
        monitors=[
            {"name": "pii", "id": "contact", "stages": ["input"], "action": "redact"},
            {
                "name": "blocklist",
                "id": "port-words",
                "stages": ["input"],
                "action": "annotate",
                "keywords": ["harbour"],
            },
        ],
    )
    whole = chat(gateway, stream=False)
    assert whole.status_code == 200
    assert whole.headers["x-taxgate-redacted"] == "contact"
    assert whole.headers["x-taxgate-flags"] == "port-words"
    assert "[REDACTED:" not in whole.json()["choices"][0]["message"]["content"]
    streamed = chat(gateway, stream=True)
    assert streamed.headers["x-taxgate-redacted"] == "contact"
    assert streamed.headers["x-taxgate-flags"] == "port-words"


def test_nothing_redacted_sends_no_header(start_gateway, sim):
    gateway = start_gateway(
        upstreams=[sim.base_url], monitors=[{"name": "pii", "stages": ["input"], "action": "redact"}]
    )
    response = httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=30,
        json={"model": "sim", "max_tokens": 4, "messages": [{"role": "user", "content": "Tell me about rivers."}]},
    )
    assert response.status_code == 200
    assert "x-taxgate-redacted" not in response.headers


def test_a_streamed_output_redaction_is_told_in_the_final_chunk(start_gateway):
    echo = ThreadedServer(
        create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    ).start()
    try:
        gateway = start_gateway(
            upstreams=[echo.base_url],
            monitors=[{"name": "pii", "id": "contact", "stages": ["output"], "action": "redact"}],
        )
        streamed = chat(gateway, stream=True)
        assert "x-taxgate-redacted" not in streamed.headers  # the headers left before the output
        final = final_chunk(streamed.content)
        assert final["taxgate_redacted"] == ["contact"]
        whole = chat(gateway, stream=False)
        assert whole.headers["x-taxgate-redacted"] == "contact"
    finally:
        echo.stop()


def test_a_streamed_responses_redaction_is_told_in_its_final_event(start_gateway):
    echo = ThreadedServer(
        create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    ).start()
    try:
        gateway = start_gateway(
            upstreams=[echo.base_url],
            monitors=[{"name": "pii", "id": "contact", "stages": ["input", "output"], "action": "redact"}],
        )
        streamed = httpx.post(
            gateway.v1 + "/responses",
            timeout=30,
            json={"model": "sim", "input": SAID, "stream": True, "max_output_tokens": 32},
        )
        assert streamed.headers["x-taxgate-redacted"] == "contact"  # the input, before any event
        events = [orjson.loads(line[6:]) for line in streamed.content.splitlines() if line.startswith(b"data: ")]
        assert events[-1]["type"] in ("response.completed", "response.incomplete")
        assert events[-1]["taxgate_redacted"] == ["contact"]
    finally:
        echo.stop()
