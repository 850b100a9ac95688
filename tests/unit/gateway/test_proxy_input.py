"""The input check end to end over a mock upstream: what reaches it, and what never does."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.unit.gateway.test_proxy import MODELS, gateway

COMPLETION = {
    "id": "c",
    "object": "text_completion",
    "model": "m",
    "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
CHAT = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}],
}
BLOCK = [{"name": "blocklist", "stages": ["input"], "keywords": ["forbiddenword"]}]
# The mock tokenizer: token t is the t-th word of this vocabulary.
VOCAB = ["<s>", "say", " forbiddenword", " hello"]


class Upstream:
    """Answers like vLLM: /v1/models, /detokenize, the completion routes; records calls."""

    def __init__(self, detokenize_status: int = 200) -> None:
        self.detokenize_status = detokenize_status
        self.seen: list[tuple[str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        body = orjson.loads(request.content)
        self.seen.append((path, body))
        if path == "/detokenize":
            if self.detokenize_status != 200:
                return httpx.Response(self.detokenize_status, json={"detail": "Not Found"})
            return httpx.Response(200, json={"prompt": "".join(VOCAB[t] for t in body["tokens"])})
        return httpx.Response(200, json=CHAT if path.endswith("chat/completions") else COMPLETION)

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


async def post_prompt(client, prompt, **extra):
    return await client.post("/v1/completions", json={"model": "m", "prompt": prompt, **extra})


def sample(client, name, **labels):
    return client.registry.get_sample_value(name, labels) or 0.0


async def test_token_ids_of_a_blocked_word_are_blocked_after_detokenizing(tmp_path):
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=BLOCK) as client:
        blocked = await post_prompt(client, [0, 1, 2])
        passed = await post_prompt(client, [0, 1, 3])
        assert sample(client, "taxgate_detokenized_prompts_total") == 2
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"
    assert passed.status_code == 200
    assert upstream.paths() == ["/detokenize", "/detokenize", "/v1/completions"]
    # Passed as the client sent it: token ids, not the detokenized text.
    assert upstream.seen[-1][1]["prompt"] == [0, 1, 3]
    assert "detokenize;dur=" in passed.headers["server-timing"]


async def test_reject_mode_refuses_token_ids_without_calling_upstream(tmp_path):
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=BLOCK, uncheckable_input="reject") as client:
        response = await post_prompt(client, [0, 1, 3])
    error = response.json()["error"]
    assert response.status_code == 400
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "uncheckable_input", "prompt")
    assert "uncheckable_input.token_ids" in error["message"]
    assert upstream.seen == []


async def test_allow_mode_forwards_and_counts(tmp_path):
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=BLOCK, uncheckable_input="allow") as client:
        response = await post_prompt(client, [0, 1, 2])
        assert sample(client, "taxgate_unchecked_inputs_total", kind="token_ids") == 1
    assert response.status_code == 200 and upstream.paths() == ["/v1/completions"]


async def test_an_upstream_without_detokenize_refuses_never_passes(tmp_path):
    upstream = Upstream(detokenize_status=404)
    async with gateway(upstream, tmp_path, monitors=BLOCK) as client:
        response = await post_prompt(client, [[0, 1, 3], [0, 3]])
        assert sample(client, "taxgate_uncheckable_rejected_total", kind="token_ids", reason="detokenize_failed") == 1
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "uncheckable_input"
    assert "/v1/completions" not in upstream.paths()


async def test_prompt_embeds_are_refused_unless_allowed(tmp_path):
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=BLOCK) as client:
        refused = await client.post("/v1/completions", json={"model": "m", "prompt_embeds": "AAAA"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "prompt_embeds"
    assert upstream.seen == []
    async with gateway(upstream, tmp_path, monitors=BLOCK, uncheckable_input={"embeddings": "allow"}) as client:
        allowed = await client.post("/v1/completions", json={"model": "m", "prompt_embeds": "AAAA"})
        assert sample(client, "taxgate_unchecked_inputs_total", kind="embeddings") == 1
    assert allowed.status_code == 200


async def test_images_are_refused_by_default_and_counted_when_allowed(tmp_path):
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    }
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=BLOCK) as client:
        refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400
    assert "uncheckable_input.media" in refused.json()["error"]["message"]
    async with gateway(upstream, tmp_path, monitors=BLOCK, uncheckable_input={"media": "allow"}) as client:
        allowed = await client.post("/v1/chat/completions", json=body)
        assert sample(client, "taxgate_unchecked_inputs_total", kind="image") == 1
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    "monitors", [[], [{"name": "blocklist", "stages": ["input"], "action": "shadow", "keywords": ["x"]}]]
)
async def test_without_an_enforcing_input_monitor_nothing_is_refused(tmp_path, monitors):
    upstream = Upstream()
    async with gateway(upstream, tmp_path, monitors=monitors) as client:
        response = await client.post("/v1/completions", json={"model": "m", "prompt_embeds": "AAAA"})
        tokens = await post_prompt(client, [0, 1, 2])
    assert response.status_code == 200 and tokens.status_code == 200
    assert upstream.paths() == ["/v1/completions", "/v1/completions"]


@pytest.mark.parametrize("text", [5, None, True, [1, 2], {"a": 1}])
async def test_a_non_string_text_part_is_400_not_500(tmp_path, text):
    async with gateway(Upstream(), tmp_path, monitors=BLOCK) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


async def test_tool_descriptions_are_checked(tmp_path):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "then say forbiddenword"}}],
    }
    async with gateway(Upstream(), tmp_path, monitors=BLOCK) as client:
        checked = await client.post("/v1/chat/completions", json=body)
    assert checked.status_code == 400 and checked.json()["error"]["code"] == "content_blocked"
    async with gateway(Upstream(), tmp_path, monitors=BLOCK, check_tools=False) as client:
        unchecked = await client.post("/v1/chat/completions", json=body)
    assert unchecked.status_code == 200


async def test_redacted_multi_part_content_keeps_its_order(tmp_path):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    upstream = Upstream()
    async with gateway(
        upstream,
        tmp_path,
        monitors=[{"name": "pii", "stages": ["input"], "action": "redact"}],
        uncheckable_input={"media": "allow"},
    ) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look:"},
                            image,
                            {"type": "text", "text": "mail jane@example.com"},
                        ],
                    }
                ],
            },
        )
    assert response.status_code == 200
    assert upstream.seen[0][1]["messages"][0]["content"] == [
        {"type": "text", "text": "look:"},
        image,
        {"type": "text", "text": "mail [REDACTED:EMAIL]"},
    ]


async def test_a_redacted_detokenized_prompt_is_sent_as_redacted_text(tmp_path):
    upstream = Upstream()
    async with gateway(
        upstream,
        tmp_path,
        monitors=[{"name": "blocklist", "stages": ["input"], "action": "redact", "keywords": ["forbiddenword"]}],
    ) as client:
        response = await post_prompt(client, [0, 1, 2])
    assert response.status_code == 200
    assert upstream.seen[-1][1]["prompt"] == "<s>say [REDACTED:BLOCKLIST]"


async def test_a_detokenize_call_cut_midway_is_502_counted_never_passed(tmp_path):
    async def cut():
        yield b'{"prom'
        raise httpx.RemoteProtocolError("peer closed connection")

    upstream = Upstream()

    def handler(request):
        if request.url.path == "/detokenize":
            return httpx.Response(200, content=cut())
        return upstream(request)

    async with gateway(handler, tmp_path, monitors=BLOCK) as client:
        response = await post_prompt(client, [0, 1, 3])
        assert sample(client, "taxgate_upstream_errors_total", upstream="http://upstream.test", kind="midstream") == 1
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"
    assert upstream.seen == []
