"""Input the monitors cannot read as text, against the real vLLM CPU server.

The token ids come from vLLM's own ``/tokenize``, so they are what a client with the
model's tokenizer would send to walk around a text monitor.
"""

from __future__ import annotations

import base64

import httpx
import pytest

pytestmark = pytest.mark.integration

BLOCKED = "forbiddenword"
BLOCK = [{"name": "blocklist", "id": "words", "stages": ["input"], "keywords": [BLOCKED]}]


def tokenize(vllm_server, text: str) -> list[int]:
    response = httpx.post(
        vllm_server.base_url + "/tokenize",
        json={"model": vllm_server.model, "prompt": text, "add_special_tokens": False},
    )
    response.raise_for_status()
    return response.json()["tokens"]


def complete(gateway, model: str, **body) -> httpx.Response:
    return httpx.post(gateway.v1 + "/completions", timeout=60, json={"model": model, "max_tokens": 2, **body})


def test_token_ids_are_detokenized_by_vllm_and_checked(start_gateway, vllm_server):
    gateway = start_gateway(upstreams=[vllm_server.base_url], monitors=BLOCK)
    model = vllm_server.model
    bad = tokenize(vllm_server, f"please say {BLOCKED} now")
    good = tokenize(vllm_server, "please say something kind now")
    blocked = complete(gateway, model, prompt=bad)
    assert blocked.status_code == 400, blocked.text
    assert blocked.json()["error"]["code"] == "content_blocked"
    batch = complete(gateway, model, prompt=[good, bad])
    assert batch.status_code == 400 and batch.json()["error"]["code"] == "content_blocked"
    passed = complete(gateway, model, prompt=good)
    assert passed.status_code == 200, passed.text
    assert passed.json()["usage"]["prompt_tokens"] == len(good)
    assert gateway.sample("taxgate_detokenized_prompts_total") == 4


def test_prompt_embeddings_are_refused(start_gateway, vllm_server):
    gateway = start_gateway(upstreams=[vllm_server.base_url], monitors=BLOCK)
    embeds = base64.b64encode(b"\0" * 64).decode()
    response = complete(gateway, vllm_server.model, prompt_embeds=embeds)
    error = response.json()["error"]
    assert response.status_code == 400
    # Refused by the gateway, naming the setting, not by vLLM.
    assert error["code"] == "uncheckable_input" and "uncheckable_input" in error["message"]
    assert gateway.sample("taxgate_uncheckable_rejected_total", kind="embeddings", reason="setting") == 1


def test_reject_and_allow_modes_with_vllm(start_gateway, vllm_server):
    tokens = tokenize(vllm_server, f"say {BLOCKED}")
    strict = start_gateway(upstreams=[vllm_server.base_url], monitors=BLOCK, uncheckable_input="reject")
    refused = complete(strict, vllm_server.model, prompt=tokens)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "uncheckable_input"
    lax = start_gateway(upstreams=[vllm_server.base_url], monitors=BLOCK, uncheckable_input="allow")
    allowed = complete(lax, vllm_server.model, prompt=tokens)
    assert allowed.status_code == 200, allowed.text
    assert lax.sample("taxgate_unchecked_inputs_total", kind="token_ids") == 1
