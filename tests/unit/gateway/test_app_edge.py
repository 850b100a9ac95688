"""The edge of the app (API keys, request ids, routing errors) over an injected upstream."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.gateway.test_proxy import COMPLETION, gateway, serving

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def answer(_request):
    return httpx.Response(200, json=COMPLETION)


def requests(client, route, status):
    return client.registry.get_sample_value(
        "taxgate_requests_total", {"route": route, "model": "unknown", "status": status}
    )


async def test_a_wrong_key_is_401_counted_under_its_route(tmp_path):
    async with gateway(serving(answer), tmp_path, api_keys=["k"]) as client:
        chat = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "rid-401"})
        models = await client.get("/v1/models", headers={"authorization": "Bearer nope"})
        assert requests(client, "chat", "401") == 1 and requests(client, "other", "401") == 1
        assert client.registry.get_sample_value("taxgate_in_flight_requests") == 0
        allowed = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer k"})
    for denied in (chat, models):
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    assert chat.headers["x-request-id"] == "rid-401"
    assert allowed.status_code == 200 and allowed.json() == COMPLETION


@pytest.mark.parametrize("metrics_auth, status", [(False, 200), (True, 401)])
async def test_health_never_asks_and_the_operator_paths_only_with_metrics_auth(tmp_path, metrics_auth, status):
    async with gateway(serving(answer), tmp_path, api_keys=["k"], metrics={"auth": metrics_auth}) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == status
        assert (await client.get("/metrics", headers={"authorization": "Bearer k"})).status_code == 200


async def test_a_wrong_method_is_405_and_an_unknown_path_404_key_or_not(tmp_path):
    async with gateway(serving(answer), tmp_path, api_keys=["k"]) as client:
        wrong = await client.get("/v1/chat/completions")
        unknown = await client.post("/v1/nowhere", json={})
        assert requests(client, "other", "405") == 1 and requests(client, "other", "404") == 1
    assert wrong.status_code == 405
    assert wrong.json()["error"] == {
        "message": "GET /v1/chat/completions: Method Not Allowed",
        "type": "invalid_request_error",
        "param": None,
        "code": "method_not_allowed",
    }
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_every_response_carries_one_request_id(tmp_path):
    async with gateway(serving(answer), tmp_path) as client:
        answers = [
            await client.get("/v1/models"),
            await client.get("/health"),
            await client.post("/v1/chat/completions", json=CHAT),
            await client.post("/v1/chat/completions", content=b"{"),
            await client.post("/v1/chat/completions", json={**CHAT, "stream": True}),
            await client.get("/nowhere"),
        ]
    for response in answers:
        assert len(response.headers.get_list("x-request-id")) == 1
    assert len({r.headers["x-request-id"] for r in answers}) == len(answers)
    assert "server-timing" in answers[2].headers


async def test_the_request_id_reaches_the_upstream_and_the_logs(tmp_path, caplog):
    seen = []

    def broken(request):
        seen.append(request.headers["x-request-id"])
        raise httpx.RemoteProtocolError("reset")

    async with gateway(serving(broken), tmp_path) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "rid-9"})
    assert response.status_code == 502 and response.headers["x-request-id"] == "rid-9"
    assert seen == ["rid-9"] and "request rid-9: 502" in caplog.text
