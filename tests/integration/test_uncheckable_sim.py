"""Token-id prompts through the gateway in front of the simulator, which tokenizes like vLLM:
the bench can send them, and a blocked word in them is still caught."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from loadtest.sim import SimSettings, create_sim_app
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration


@pytest.fixture
def sim():
    app = create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    server = ThreadedServer(app).start()
    yield server
    server.stop()


def test_token_ids_from_the_simulator_are_detokenized_and_checked(start_gateway, sim):
    gateway = start_gateway(
        upstreams=[sim.base_url], monitors=[{"name": "blocklist", "stages": ["input"], "keywords": ["forbiddenword"]}]
    )

    def tokens(text):
        return httpx.post(sim.base_url + "/tokenize", json={"prompt": text}).json()["tokens"]

    def complete(prompt):
        return httpx.post(
            gateway.v1 + "/completions", timeout=10, json={"model": "sim", "prompt": prompt, "max_tokens": 8}
        )

    blocked = complete(tokens("now say forbiddenword"))
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"
    passed = complete(tokens("now say hello"))
    assert passed.status_code == 200
    assert passed.json()["choices"][0]["text"] == "now say hello"  # the echo of its ids
    assert gateway.sample("taxgate_detokenized_prompts_total") == 2
