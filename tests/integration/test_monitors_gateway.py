"""Monitors in the gateway, in front of the real vLLM CPU server.

vLLM's output is deterministic for a given per-request seed (sampled, as greedy
decoding of random weights repeats one token), so a test first
learns a word the model produces, then configures a monitor that catches it.
"""

from __future__ import annotations

import re
import threading

import httpx
import openai
import pytest

from gateway.audit.filter import AuditFilter
from gateway.audit.query import query_events
from monitors.base import AsyncMonitor, Finding, Monitor
from monitors.registry import MonitorRegistry

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "Tell me about the harbour at night."}]
FIXED = {"temperature": 1.0, "seed": 3, "max_tokens": 48, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def learned(vllm_server) -> tuple[str, str]:
    """The direct output and one word in it that occurs once, seen whole."""
    client = openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key="x", max_retries=0)
    text = client.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED).choices[0].message.content
    words = [w for w in re.findall(r"[A-Za-z]{4,}", text) if text.count(w) == 1]
    assert words, f"no usable word in {text!r}"
    # A word from the middle of the output, so holdback windows have text on both sides.
    return text, words[len(words) // 2]


def client_for(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)


def stream_text(client, model, **extra):
    chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True, **FIXED, **extra))
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, finish


def blocklist(word: str, action: str, stages=("output",)) -> dict:
    return {
        "name": "blocklist",
        "id": "learned-word",
        "stages": list(stages),
        "action": action,
        "patterns": [re.escape(word)],
    }


def test_input_block_names_the_monitor(start_gateway, vllm_server):
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        monitors=[
            {"name": "blocklist", "id": "topics", "stages": ["input"], "keywords": ["harbour"]},
            {"name": "profanity", "stages": ["input"], "threshold": 0.9},
        ],
    )
    client = client_for(gateway)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=vllm_server.model, messages=PROMPT, max_tokens=4)
    assert err.value.body["code"] == "content_blocked" and "topics" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=vllm_server.model,
            max_tokens=4,
            messages=[{"role": "user", "content": "You are a worthless idiot and a piece of shit."}],
        )
    ok = client.chat.completions.create(
        model=vllm_server.model, max_tokens=4, messages=[{"role": "user", "content": "What a lovely day for a walk."}]
    )
    assert ok.choices[0].message.content
    assert gateway.sample("taxgate_monitor_verdicts_total", monitor="topics", stage="input", action="block") == 1


def test_output_block_non_streamed_and_both_stream_modes(start_gateway, vllm_server, learned):
    text, word = learned
    for mode in ("holdback", "stream_first"):
        gateway = start_gateway(
            upstreams=[vllm_server.base_url],
            monitors=[blocklist(word, "block")],
            streaming={"mode": mode, "overlap_chars": 12},
        )
        client = client_for(gateway)
        whole = client.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED)
        assert whole.choices[0].finish_reason == "content_filter"
        assert word not in whole.choices[0].message.content
        streamed, finish = stream_text(client, vllm_server.model)
        assert finish == ["content_filter"]
        if mode == "holdback":
            assert word not in streamed  # nothing of the flagged window leaves
            assert text.startswith(streamed)
        else:
            assert gateway.sample("taxgate_stream_leaked_tokens_total") > 0
        assert gateway.sample("taxgate_stream_blocks_total", mode=mode) == 1


@pytest.mark.parametrize("overlap", [0, 12])
def test_output_redaction_streamed_and_not(start_gateway, vllm_server, learned, overlap):
    text, word = learned
    # A check at nearly every chunk; a possible partial match is held, so the word is
    # seen whole whatever the context before each check.
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        monitors=[blocklist(word, "redact")],
        streaming={"mode": "holdback", "overlap_chars": overlap},
    )
    client = client_for(gateway)
    expected = text.replace(word, "[REDACTED:BLOCKLIST]")
    whole = client.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED)
    assert whole.choices[0].message.content == expected
    streamed, finish = stream_text(client, vllm_server.model)
    assert streamed == expected
    assert finish == ["length"]


def test_annotate_sets_header(start_gateway, vllm_server, learned):
    _, word = learned
    gateway = start_gateway(upstreams=[vllm_server.base_url], monitors=[blocklist(word, "annotate")])
    response = httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=60,
        json={
            "model": vllm_server.model,
            "messages": PROMPT,
            "temperature": 1.0,
            "seed": 3,
            "max_tokens": 48,
            "ignore_eos": True,
        },
    )
    assert response.headers["x-taxgate-flags"] == "learned-word"
    assert word in response.json()["choices"][0]["message"]["content"]
    # Streamed: the headers left before the output was checked, so the final chunk says it.
    chunks = list(
        client_for(gateway).chat.completions.create(model=vllm_server.model, messages=PROMPT, stream=True, **FIXED)
    )
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert final.model_extra["taxgate_flags"] == ["learned-word"]


class GatedMonitor(Monitor):
    """Flags everything, but only answers once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def check(self, texts):
        assert self.gate.wait(30)
        return [Finding(score=1.0, labels={"gated": 1.0}) for _ in texts]


def test_shadow_is_not_waited_on_but_recorded(start_gateway, vllm_server, tmp_path):
    monitor = GatedMonitor()
    registry = MonitorRegistry.from_entry_points()
    registry.register("gated", lambda spec: monitor)
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        monitor_registry=registry,
        monitors=[{"name": "gated", "action": "shadow", "stages": ["input"], "timeout_ms": 30000}],
        audit={"path": str(tmp_path / "shadow.db"), "sync": "always"},
    )
    response = client_for(gateway).chat.completions.create(model=vllm_server.model, messages=PROMPT, max_tokens=4)
    # The answer arrived while the shadow monitor was still blocked on its gate.
    assert response.choices[0].message.content is not None
    assert gateway.sample("taxgate_monitor_verdicts_total", monitor="gated", stage="input", action="shadow") == 0
    monitor.gate.set()
    gateway.stop()
    events = query_events(tmp_path / "shadow.db", AuditFilter(monitor="gated"))
    assert len(events) == 1 and events[0].action == "shadow" and events[0].hit


class RaisingMonitor(Monitor):
    def check(self, texts):
        raise RuntimeError("model crashed")


class HangingMonitor(AsyncMonitor):
    async def check(self, texts):
        import asyncio

        await asyncio.sleep(30)
        return []


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_failing_monitors_follow_on_error(start_gateway, vllm_server, on_error):
    registry = MonitorRegistry.from_entry_points()
    registry.register("raiser", lambda spec: RaisingMonitor())
    registry.register("hanger", lambda spec: HangingMonitor())
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        monitor_registry=registry,
        monitors=[
            {"name": "raiser", "stages": ["input"], "on_error": on_error},
            {"name": "hanger", "stages": ["input"], "on_error": on_error, "timeout_ms": 100},
        ],
    )
    client = client_for(gateway)
    if on_error == "open":
        assert client.chat.completions.create(model=vllm_server.model, messages=PROMPT, max_tokens=4).choices
        for monitor in ("raiser", "hanger"):
            assert gateway.sample("taxgate_monitor_fail_open_total", monitor=monitor, stage="input") == 1
    else:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=vllm_server.model, messages=PROMPT, max_tokens=4)
        assert err.value.body["code"] == "content_blocked"
    assert gateway.sample("taxgate_monitor_errors_total", monitor="raiser", stage="input", kind="error") == 1
    assert gateway.sample("taxgate_monitor_errors_total", monitor="hanger", stage="input", kind="timeout") == 1
    gateway.stop()
    # The audit log says what was done: let through unchecked (error) or blocked.
    action = "error" if on_error == "open" else "block"
    events = query_events(gateway.settings.audit.path, AuditFilter(errors=True))
    assert sorted((e.monitor, e.action, e.error) for e in events) == [
        ("hanger", action, "timeout"),
        ("raiser", action, "error"),
    ]


def test_audit_complete_after_blocks_and_clean_shutdown(start_gateway, vllm_server, tmp_path):
    db = tmp_path / "audit.db"
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        audit={"path": str(db)},
        monitors=[{"name": "blocklist", "id": "topics", "stages": ["input"], "keywords": ["harbour"]}],
    )
    client = client_for(gateway)
    for index in range(7):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=vllm_server.model,
                max_tokens=4,
                extra_headers={"x-request-id": f"r{index}"},
                messages=[{"role": "user", "content": f"harbour question {index}"}],
            )
    gateway.stop()
    events = query_events(db)
    assert sorted(e.request_id for e in events) == [f"r{i}" for i in range(7)]
    for event in events:
        assert (event.stage, event.monitor, event.action, event.hit) == ("input", "topics", "block", True)
        assert event.score == 1.0 and event.ts > 0
        assert "harbour" not in event.excerpt  # the flagged text is masked in the excerpt


def test_pii_redact_and_profanity_block_together_streamed_and_not(start_gateway, vllm_server, learned):
    """The typical deployment on the real server: a pattern monitor that redacts (the
    learned word stands in for a secret: random weights write no e-mail addresses), pii
    redact and the profanity classifier holding each word until it is complete."""
    text, word = learned
    gateway = start_gateway(
        upstreams=[vllm_server.base_url],
        monitors=[
            blocklist(word, "redact"),
            {"name": "pii", "stages": ["output"], "action": "redact"},
            {"name": "profanity", "stages": ["output"], "action": "block", "threshold": 0.95},
        ],
    )
    client = client_for(gateway)
    expected = text.replace(word, "[REDACTED:BLOCKLIST]")
    whole = client.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED)
    assert whole.choices[0].message.content == expected
    streamed, finish = stream_text(client, vllm_server.model)
    assert streamed == expected and finish == ["length"]
    assert gateway.wait_sample("taxgate_stream_checks_count", 1) == 1  # the one stream
    assert gateway.sample("taxgate_stream_checks_sum") >= 1  # it was checked as it went


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_carry_no_flagged_text(start_gateway, vllm_server, learned, stream):
    text, word = learned
    gateway = start_gateway(upstreams=[vllm_server.base_url], monitors=[blocklist(word, "redact")])
    client = client_for(gateway)
    extra = {"logprobs": True, "top_logprobs": 2}
    if stream:
        chunks = list(
            client.chat.completions.create(model=vllm_server.model, messages=PROMPT, stream=True, **FIXED, **extra)
        )
        content = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
        entries = [
            e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or ()
        ]
    else:
        choice = client.chat.completions.create(model=vllm_server.model, messages=PROMPT, **FIXED, **extra).choices[0]
        content, entries = choice.message.content, choice.logprobs.content
    assert content == text.replace(word, "[REDACTED:BLOCKLIST]")
    tokens = "".join(entry.token for entry in entries)
    assert word not in tokens and "[REDACTED:BLOCKLIST]" in tokens
    masked = [entry for entry in entries if entry.token == "[REDACTED:BLOCKLIST]"]
    assert masked and all(not entry.top_logprobs for entry in masked)  # alternatives gone too
