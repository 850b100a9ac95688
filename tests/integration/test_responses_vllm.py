"""``client.responses.create`` through the gateway in front of the real vLLM CPU server,
which serves the Responses API: the same answer as direct, whole and streamed, with an
output monitor on so the monitored relay reads vLLM's own events."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.integration

FIXED = {"temperature": 0, "max_output_tokens": 16}
INPUT = "Write a short poem about the sea."


@pytest.fixture
def clients(start_gateway, vllm_server):
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        ready_path="/ready",
        monitors=[{"name": "pii", "stages": ["input", "output"], "action": "redact"}],
    )
    direct = openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key="x", max_retries=0)
    through = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    return direct, through, vllm_server.model


def test_whole_and_streamed_match_direct(clients):
    direct, through, model = clients
    a = direct.responses.create(model=model, input=INPUT, **FIXED)
    b = through.responses.create(model=model, input=INPUT, **FIXED)
    assert b.output_text == a.output_text and b.output_text
    assert b.usage.output_tokens == a.usage.output_tokens

    def streamed(client):
        events = list(client.responses.create(model=model, input=INPUT, stream=True, **FIXED))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return text, events

    text_a, _ = streamed(direct)
    text_b, events = streamed(through)
    assert text_b == text_a and text_b
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert events[-1].response.output_text == text_b
