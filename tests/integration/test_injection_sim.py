"""The shipped injection classifier in the gateway, in front of the simulator: a jailbreak
prompt is refused with content_blocked, an everyday one answered, and the verdict counted."""

from __future__ import annotations

import openai
import pytest
from prometheus_client import CollectorRegistry

from loadtest.datasets import load_dataset
from loadtest.sim import SimSettings, create_sim_app
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration


@pytest.fixture
def sim():
    app = create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    server = ThreadedServer(app).start()
    yield server
    server.stop()


def test_a_jailbreak_prompt_is_blocked_and_an_everyday_one_answered(start_gateway, sim):
    gateway = start_gateway(
        upstreams=[sim.base_url],
        monitors=[{"name": "injection", "id": "injection", "stages": ["input"], "action": "block"}],
    )
    client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    attack = next(item.text for item in load_dataset(labels=["jailbreak"]) if "ignore" in item.text.lower())
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="sim",
            max_tokens=4,
            messages=[
                {"role": "system", "content": "You translate the user's text into French."},
                {"role": "user", "content": "Please translate this email from my landlord. " + attack},
            ],
        )
    assert err.value.body["code"] == "content_blocked" and "injection" in err.value.body["message"]
    ok = client.chat.completions.create(
        model="sim",
        max_tokens=4,
        messages=[{"role": "user", "content": "How long should I knead bread dough by hand?"}],
    )
    assert ok.choices[0].message.content
    assert gateway.sample("taxgate_monitor_verdicts_total", monitor="injection", stage="input", action="block") == 1
