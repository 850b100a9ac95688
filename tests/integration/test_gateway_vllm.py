"""The gateway in front of the real vLLM CPU server, driven by the real openai client."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]
FIXED = {"temperature": 0, "seed": 7, "max_tokens": 24}


@pytest.fixture
def gateway(start_gateway, vllm_server):
    return start_gateway(upstreams=[vllm_server.base_url], ready_path="/ready")


def clients(vllm_server, gateway):
    direct = openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key="x", max_retries=0)
    through = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    return direct, through


def streamed_text(stream) -> tuple[str, list]:
    chunks = list(stream)
    text = "".join(
        c.choices[0].delta.content or ""
        if c.choices and hasattr(c.choices[0], "delta")
        else (c.choices[0].text if c.choices else "")
        for c in chunks
    )
    return text, chunks


def test_chat_non_streamed_matches_direct(vllm_server, gateway):
    direct, through = clients(vllm_server, gateway)
    a = direct.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED)
    b = through.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED)
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.choices[0].message.content
    assert b.usage.completion_tokens == a.usage.completion_tokens


def test_chat_streamed_matches_direct_with_usage(vllm_server, gateway):
    direct, through = clients(vllm_server, gateway)
    kwargs = {
        "model": vllm_server.model,
        "messages": PROMPT,
        "stream": True,
        "stream_options": {"include_usage": True},
        **FIXED,
    }
    text_a, _ = streamed_text(direct.chat.completions.create(**kwargs))
    text_b, chunks = streamed_text(through.chat.completions.create(**kwargs))
    assert text_b == text_a and text_b
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions_match_direct_streamed_and_not(vllm_server, gateway):
    direct, through = clients(vllm_server, gateway)
    kwargs = {"model": vllm_server.model, "prompt": "Once upon a time", **FIXED}
    a = direct.completions.create(**kwargs).choices[0].text
    b = through.completions.create(**kwargs).choices[0].text
    assert a == b and b
    streamed = "".join(c.choices[0].text for c in through.completions.create(stream=True, **kwargs) if c.choices)
    assert streamed == a


def test_unknown_fields_reach_vllm(vllm_server, gateway):
    _, through = clients(vllm_server, gateway)
    response = through.chat.completions.create(
        model=vllm_server.model, messages=PROMPT, max_tokens=11, extra_body={"ignore_eos": True, "top_k": 5}
    )
    assert response.usage.completion_tokens == 11
    assert response.choices[0].finish_reason == "length"


def test_models_request_id_and_server_timing(vllm_server, gateway):
    _, through = clients(vllm_server, gateway)
    assert [m.id for m in through.models.list().data] == [vllm_server.model]
    response = httpx.post(
        gateway.v1 + "/chat/completions",
        headers={"x-request-id": "abc-123"},
        json={"model": vllm_server.model, "messages": PROMPT, "max_tokens": 4},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"
    timing = response.headers["server-timing"]
    assert "upstream;dur=" in timing and "total;dur=" in timing


def test_bad_requests_get_openai_errors(vllm_server, gateway):
    bad_json = httpx.post(gateway.v1 + "/chat/completions", content=b"{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(gateway.v1 + "/chat/completions", json={"model": vllm_server.model})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    _, through = clients(vllm_server, gateway)
    with pytest.raises(openai.NotFoundError) as err:
        through.chat.completions.create(model="no-such-model", messages=PROMPT)
    assert err.value.body["code"] == "model_not_found"
    route = httpx.get(gateway.base_url + "/v2/nothing")
    assert route.status_code == 404 and route.json()["error"]["code"] == "not_found"
    assert gateway.sample("taxgate_requests_total", route="chat", model="unknown", status="400") == 2


def test_metric_counts_match_requests(vllm_server, gateway):
    _, through = clients(vllm_server, gateway)
    exact = {"max_tokens": 4, "extra_body": {"ignore_eos": True}}
    for _ in range(3):
        through.chat.completions.create(model=vllm_server.model, messages=PROMPT, **exact)
    for _ in range(2):
        list(
            through.chat.completions.create(
                model=vllm_server.model, messages=PROMPT, stream=True, **exact, stream_options={"include_usage": True}
            )
        )
    labels = {"route": "chat", "model": vllm_server.model}
    assert gateway.wait_sample("taxgate_requests_total", 5, status="200", **labels) == 5
    assert gateway.sample("taxgate_e2e_seconds_count", **labels) == 5
    assert gateway.sample("taxgate_ttft_seconds_count", **labels) == 5
    assert gateway.sample("taxgate_upstream_ttft_seconds_count", **labels) == 5
    assert gateway.sample("taxgate_itl_seconds_count", **labels) > 0
    assert gateway.sample("taxgate_completion_tokens_total", model=vllm_server.model) == 5 * 4
    assert gateway.sample("taxgate_prompt_tokens_total", model=vllm_server.model) > 0
    assert gateway.sample("taxgate_in_flight_requests") == 0
    text = httpx.get(gateway.base_url + "/metrics").text
    assert "taxgate_ttft_seconds_bucket" in text


def test_client_disconnect_aborts_vllm_request(vllm_server, gateway):
    body = {"model": vllm_server.model, "messages": PROMPT, "max_tokens": 1000, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.v1 + "/chat/completions", json=body) as response:
            lines = response.iter_lines()
            for _ in range(5):
                next(lines)
            assert vllm_server.metric("vllm:num_requests_running") == 1
    deadline = time.monotonic() + 15
    while vllm_server.metric("vllm:num_requests_running") != 0:
        assert time.monotonic() < deadline, "vLLM still runs the request the client left"
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while gateway.sample("taxgate_client_disconnects_total", route="chat") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_upstream_down_is_502(start_gateway, tmp_path):
    from tests.servers import free_port

    gateway = start_gateway(upstreams=[f"http://127.0.0.1:{free_port()}"], health={"interval_s": 60})
    client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="any", messages=PROMPT)
    assert err.value.status_code == 502
    assert err.value.body["type"] == "upstream_error"
    assert httpx.get(gateway.base_url + "/ready").status_code == 503
