"""The simulator acting out drawn faults, in-process (ASGI transport)."""

import pytest

from loadtest.sim.faults import GARBAGE_BODY, GARBAGE_EVENT, FaultRates, InjectedFault
from tests.unit.loadtest.test_sim_app import CHAT, chat, client_for


async def injected(client, kind: str) -> float:
    text = (await client.get("/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith(f'sim_injected_faults_total{{kind="{kind}"}}'))
    return float(line.rsplit(" ", 1)[1])


async def test_garbage_stream_ends_without_done():
    async with client_for(faults=FaultRates(garbage=1.0)) as client:
        response = await client.post(CHAT, json=chat("one two three four", stream=True))
        assert response.status_code == 200
        assert GARBAGE_EVENT in response.content and b"[DONE]" not in response.content
        assert await injected(client, "garbage") == 1


async def test_garbage_whole_answer_is_not_json():
    async with client_for(faults=FaultRates(garbage=1.0)) as client:
        response = await client.post(CHAT, json=chat("hello"))
        assert response.status_code == 200 and response.content == GARBAGE_BODY


async def test_reset_drops_the_exchange():
    async with client_for(faults=FaultRates(reset=1.0)) as client:
        for stream in (True, False):
            with pytest.raises(InjectedFault):
                await client.post(CHAT, json=chat("one two three", stream=stream))
        assert await injected(client, "reset") == 2
        # The aborted generations freed their slots: a fault-free answer still comes.
        metrics = (await client.get("/metrics")).text
        assert 'vllm:num_requests_running{engine="0",model_name="sim"} 0.0' in metrics


async def test_stall_pauses_then_the_answer_completes():
    async with client_for(faults=FaultRates(stall=1.0, stall_s=0.05)) as client:
        response = await client.post(CHAT, json=chat("one two", stream=True))
        assert response.content.endswith(b"data: [DONE]\n\n")
        whole = await client.post(CHAT, json=chat("one two"))
        assert whole.json()["choices"][0]["message"]["content"] == "one two"
        assert await injected(client, "stall") == 2


async def test_no_faults_by_default():
    async with client_for() as client:
        for _ in range(20):
            assert (await client.post(CHAT, json=chat("hi", stream=True))).content.endswith(b"[DONE]\n\n")
        assert await injected(client, "reset") == 0


RESPONSES = "/v1/responses"


def responses_body(text: str, stream: bool) -> dict:
    return {"model": "sim", "input": text, "stream": stream}


async def test_responses_route_acts_out_its_faults():
    async with client_for(faults=FaultRates(garbage=1.0)) as client:
        response = await client.post(RESPONSES, json=responses_body("one two three", True))
        assert response.status_code == 200 and GARBAGE_EVENT in response.content
        assert b"response.completed" not in response.content
        whole = await client.post(RESPONSES, json=responses_body("one two", False))
        assert whole.content == GARBAGE_BODY
        assert await injected(client, "garbage") == 2
    async with client_for(faults=FaultRates(reset=1.0)) as client:
        for stream in (True, False):
            with pytest.raises(InjectedFault):
                await client.post(RESPONSES, json=responses_body("one two three", stream))
        assert await injected(client, "reset") == 2
    async with client_for(faults=FaultRates(stall=1.0, stall_s=0.05)) as client:
        response = await client.post(RESPONSES, json=responses_body("one two", True))
        assert response.content.rstrip().split(b"\n")[0] == b"event: response.created"
        assert b"event: response.completed" in response.content
        whole = await client.post(RESPONSES, json=responses_body("one two", False))
        assert whole.json()["output"][0]["content"][0]["text"] == "one two"
