"""``client.responses.create`` with the real ``openai`` client, through the gateway, in
front of the simulator (echo mode says the input back): an input blocked, PII in the
output redacted, whole and streamed; the simulator's faults end a stream, raw or
monitored, with the Responses API's typed error event."""

from __future__ import annotations

import openai
import pytest
from openai.types.responses import ResponseErrorEvent
from prometheus_client import CollectorRegistry

from loadtest.sim import SimSettings, create_sim_app
from loadtest.sim.faults import FaultRates
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration

MONITORS = [
    {"name": "blocklist", "stages": ["input"], "keywords": ["forbiddenword"]},
    {"name": "pii", "stages": ["output"], "action": "redact"},
]
SAID = "Write to bob@example.com about the harbour"
REDACTED = "Write to [REDACTED:EMAIL] about the harbour"


@pytest.fixture
def sim():
    app = create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    server = ThreadedServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def client(start_gateway, sim):
    gateway = start_gateway(upstreams=[sim.base_url], monitors=MONITORS)
    client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    client.gateway = gateway
    return client


def test_whole_response_redacted_and_input_blocked(client):
    response = client.responses.create(model="sim", instructions="Be brief.", input=SAID)
    assert response.status == "completed"
    assert response.output_text == REDACTED
    assert response.usage.output_tokens > 0
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(
            model="sim", input=[{"role": "user", "content": [{"type": "input_text", "text": "say forbiddenword"}]}]
        )
    assert raised.value.code == "content_blocked"
    assert client.gateway.sample("taxgate_requests_total", route="responses", model="sim", status="400") == 1


def test_streamed_response_redacted_in_deltas_and_final(client):
    events = list(client.responses.create(model="sim", input=SAID, stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == REDACTED
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == REDACTED
    assert events[-1].response.output_text == REDACTED
    with client.responses.stream(model="sim", input=SAID) as stream:
        final = stream.get_final_response()
    assert final.output_text == REDACTED


def test_streamed_input_blocked_before_any_event(client):
    with pytest.raises(openai.BadRequestError) as raised:
        list(client.responses.create(model="sim", input="say forbiddenword", stream=True))
    assert raised.value.code == "content_blocked"


# kind -> (the error event's code, the upstream_errors_total kind it is counted as)
FAULTS = {
    "reset": ("bad_gateway", "midstream"),
    "garbage": ("bad_gateway", "protocol"),
    "stall": ("upstream_timeout", "midstream"),
}


@pytest.mark.parametrize("monitors", [[], MONITORS], ids=["raw", "monitored"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulted_stream_ends_with_a_typed_error_event(start_gateway, fault, monitors):
    # Every answer faults; a stall outlasts the gateway's idle timeout.
    settings = SimSettings(profile="instant", model="sim", faults=FaultRates(**{fault: 1.0}, stall_s=30.0))
    sim = ThreadedServer(create_sim_app(settings, registry=CollectorRegistry())).start()
    try:
        gateway = start_gateway(upstreams=[sim.base_url], monitors=monitors, timeouts={"idle_s": 0.3})
        client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
        events = list(client.responses.create(model="sim", input="one two three four five", stream=True))
    finally:
        sim.stop()
    code, kind = FAULTS[fault]
    assert events[0].type == "response.created"
    last = events[-1]
    assert isinstance(last, ResponseErrorEvent), last
    assert last.code == code and last.sequence_number > events[-2].sequence_number
    assert "response.completed" not in [event.type for event in events]
    assert gateway.wait_sample("taxgate_upstream_errors_total", 1, upstream=sim.base_url, kind=kind) == 1
