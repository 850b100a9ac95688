"""The uncheckable_input setting's three modes, and the detokenizer over a fake upstream."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.detokenize import Detokenizer
from gateway.endpoints import parse_request, read_input
from gateway.errors import UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.uncheckable import UncheckablePolicy, UncheckableRejected, plan, settle

IMAGE = {"type": "image_url", "image_url": {"url": "http://x/i.png"}}


def view_of(route: str, body: dict):
    return read_input(parse_request(route, orjson.dumps({"model": "m", **body})), check_tools=True)


def tokens_view():
    return view_of("completions", {"prompt": [[1, 2], [3]]})


def sample(metrics: GatewayMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("detokenize", ("detokenize", "reject", "reject")),
        ("reject", ("reject", "reject", "reject")),
        ("allow", ("allow", "allow", "allow")),
        ({"media": "allow"}, ("detokenize", "reject", "allow")),
        ({}, ("detokenize", "reject", "reject")),
    ],
)
def test_policy_shorthand_and_mapping(raw, expected):
    policy = UncheckablePolicy.model_validate(raw)
    assert (policy.token_ids, policy.embeddings, policy.media) == expected


@pytest.mark.parametrize("raw", ["maybe", {"embeddings": "detokenize"}, {"audio": "allow"}])
def test_policy_refuses_what_it_cannot_do(raw):
    with pytest.raises(ValidationError):
        UncheckablePolicy.model_validate(raw)


async def fake_detokenize(prompts):
    return [" ".join(f"t{token}" for token in prompt.tokens) for prompt in prompts]


async def test_detokenize_mode_adds_the_texts_for_the_monitors():
    metrics = GatewayMetrics(CollectorRegistry())
    view = tokens_view()
    await settle(view, UncheckablePolicy(), fake_detokenize, metrics)
    assert view.texts == ["t1 t2", "t3"]
    assert sample(metrics, "taxgate_detokenized_prompts_total") == 2
    assert sample(metrics, "taxgate_unchecked_inputs_total", kind="token_ids") == 0


async def test_reject_mode_names_the_setting_and_counts():
    metrics = GatewayMetrics(CollectorRegistry())
    with pytest.raises(UncheckableRejected) as raised:
        await settle(tokens_view(), UncheckablePolicy.model_validate("reject"), fake_detokenize, metrics)
    error = raised.value
    assert (error.status, error.code, error.param) == (400, "uncheckable_input", "prompt.0")
    assert "uncheckable_input.token_ids" in error.message
    assert sample(metrics, "taxgate_uncheckable_rejected_total", kind="token_ids", reason="setting") == 1


async def test_allow_mode_forwards_unread_and_counts_each_part():
    metrics = GatewayMetrics(CollectorRegistry())
    view = view_of("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE, IMAGE]}]})
    await settle(view, UncheckablePolicy.model_validate("allow"), fake_detokenize, metrics)
    assert view.texts == ["hi"]
    assert sample(metrics, "taxgate_unchecked_inputs_total", kind="image") == 2


async def test_default_refuses_embeddings_and_media_but_detokenizes():
    policy = UncheckablePolicy()
    assert plan(view_of("completions", {"prompt_embeds": "AAAA"}), policy).rejected.kind == "embeddings"
    chat = view_of("chat", {"messages": [{"role": "user", "content": [IMAGE]}]})
    assert plan(chat, policy).rejected.param == "messages.0.content.0"
    assert len(plan(tokens_view(), policy).detokenize) == 2


async def test_a_refusal_wins_and_nothing_is_counted_as_unchecked():
    metrics = GatewayMetrics(CollectorRegistry())
    view = view_of(
        "chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [IMAGE, {"type": "input_audio", "input_audio": {"data": "A", "format": "wav"}}],
                }
            ]
        },
    )
    policy = UncheckablePolicy.model_validate({"media": "allow", "embeddings": "reject"})
    await settle(view, policy, fake_detokenize, metrics)  # both media: allowed
    assert sample(metrics, "taxgate_unchecked_inputs_total", kind="audio") == 1
    view = view_of(
        "chat", {"messages": [{"role": "user", "content": [IMAGE, {"type": "image_embeds", "image_embeds": "AAAA"}]}]}
    )
    metrics = GatewayMetrics(CollectorRegistry())
    with pytest.raises(UncheckableRejected):
        await settle(view, policy, fake_detokenize, metrics)
    assert sample(metrics, "taxgate_unchecked_inputs_total", kind="image") == 0


# -- the detokenizer -------------------------------------------------------------------


class FakeUpstream:
    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple[str, dict, dict]] = []

    async def post(self, path, body, headers, model):
        self.calls.append((path, orjson.loads(body), headers))
        return self.answer(orjson.loads(body))


async def test_detokenizer_sends_vllms_request_and_keeps_the_order():
    upstream = FakeUpstream(lambda body: (200, orjson.dumps({"prompt": "".join(chr(96 + t) for t in body["tokens"])})))
    view = view_of("completions", {"prompt": [[1, 2], [3], [4, 5, 6]]})
    texts = await Detokenizer(upstream.post).texts(view.token_prompts, model="m", request_id="rid")
    assert texts == ["ab", "c", "def"]
    path, body, headers = upstream.calls[0]
    assert path == "/detokenize" and body == {"model": "m", "tokens": [1, 2]}
    assert headers["x-request-id"] == "rid"


@pytest.mark.parametrize(
    "status, answer",
    [
        (404, b'{"detail": "Not Found"}'),
        (400, b'{"error": {"message": "bad token"}}'),
        (200, b"not json"),
        (200, b'{"prompt": 5}'),
        (200, b"[1]"),
        (500, b""),
    ],
)
async def test_an_upstream_that_cannot_detokenize_refuses_the_request(status, answer):
    upstream = FakeUpstream(lambda body: (status, answer))
    view = view_of("completions", {"prompt": [[1], [2]]})
    with pytest.raises(UncheckableRejected) as raised:
        await Detokenizer(upstream.post).texts(view.token_prompts, model="m", request_id="r")
    assert raised.value.code == "uncheckable_input"
    assert "could not detokenize" in raised.value.message


async def test_detokenize_failure_is_counted():
    async def failing(prompts):
        raise UncheckableRejected("no")

    metrics = GatewayMetrics(CollectorRegistry())
    with pytest.raises(UncheckableRejected):
        await settle(tokens_view(), UncheckablePolicy(), failing, metrics)
    assert sample(metrics, "taxgate_uncheckable_rejected_total", kind="token_ids", reason="detokenize_failed") == 1


async def test_a_transport_fault_keeps_its_own_error():
    async def down(path, body, headers, model):
        raise UpstreamError("upstream refused")

    view = view_of("completions", {"prompt": [1, 2]})
    with pytest.raises(UpstreamError):
        await Detokenizer(down).texts(view.token_prompts, model="m", request_id="r")


def test_the_setting_from_yaml_and_env():
    from gateway.settings import SettingsError, load_settings

    env = {"TAXGATE_UPSTREAMS": "http://u:8000", "TAXGATE_UNCHECKABLE_INPUT": "allow"}
    assert load_settings(env=env).uncheckable_input.media == "allow"
    env["TAXGATE_UNCHECKABLE_INPUT__MEDIA"] = "allow"
    del env["TAXGATE_UNCHECKABLE_INPUT"]
    settings = load_settings(env=env)
    assert (settings.uncheckable_input.token_ids, settings.uncheckable_input.media) == ("detokenize", "allow")
    assert settings.check_tools is True
    with pytest.raises(SettingsError, match="uncheckable_input"):
        load_settings(env={**env, "TAXGATE_UNCHECKABLE_INPUT__MEDIA": "detokenize"})
