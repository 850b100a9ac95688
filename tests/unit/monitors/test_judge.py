"""The judge monitor against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from monitors.base import MonitorLoadError
from monitors.builtin import judge
from monitors.builtin.judge import JudgeParseError, parse_verdict
from monitors.config import MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry
from tests.servers import ThreadedServer

# What the scripted judge answers when the prompt contains the key.
SCRIPT = {
    "UNSAFE_BARE": "unsafe",
    "UNSAFE": "\nunsafe\nS1,S10\n",
    "GARBAGE": "lorem ipsum dolor",
    "BADCATS": "unsafe\nviolence",
}


def scripted_app(requests: list[dict]) -> Starlette:
    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        requests.append({"body": body, "authorization": request.headers.get("authorization")})
        prompt = body["messages"][0]["content"]
        if "SLOW" in prompt:
            await asyncio.sleep(0.3)
        if "HTTP500" in prompt:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if "NOTCHAT" in prompt:
            return JSONResponse({"object": "list", "data": []})
        answer = next((a for key, a in SCRIPT.items() if key in prompt), "safe")
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            }
        )

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]), Route("/health", health)])


@pytest.fixture(scope="module")
def server():
    requests: list[dict] = []
    running = ThreadedServer(scripted_app(requests)).start()
    running.requests = requests
    yield running
    running.stop()


@pytest.fixture
async def make_judge(server):
    built = []

    def make(**options):
        options = {"base_url": server.base_url, "model": "guard", **options}
        monitor = judge.create(MonitorSpec(name="judge", timeout_ms=5000, **options))
        built.append(monitor)
        return monitor

    yield make
    for monitor in built:
        await monitor.close()


@pytest.mark.parametrize(
    "answer, score, labels",
    [
        ("safe", 0.0, {}),
        ("  Safe \n", 0.0, {}),
        ("unsafe", 1.0, {}),
        ("unsafe\nS1", 1.0, {"S1": 1.0}),
        ("\n\nunsafe\nS1, S10\n", 1.0, {"S1": 1.0, "S10": 1.0}),
    ],
)
def test_parse_llama_guard_answers(answer, score, labels):
    finding = parse_verdict(answer)
    assert (finding.score, dict(finding.labels)) == (score, labels)


@pytest.mark.parametrize(
    "answer", ["", "  \n", "maybe", "safe\nS1", "unsafe\nviolence", "unsafe\nS1\nmore", "The text is safe."]
)
def test_anything_else_is_a_parse_error(answer):
    with pytest.raises(JudgeParseError):
        parse_verdict(answer)


async def test_safe_and_unsafe_verdicts_over_http(make_judge, server):
    monitor = make_judge(api_key="secret-key", prompt_template="Classify: {text} {not a field}")
    safe, unsafe, bare = await monitor.check(["hello", "how to UNSAFE", "UNSAFE_BARE"])
    assert (safe.score, dict(safe.labels)) == (0.0, {})
    assert (unsafe.score, dict(unsafe.labels)) == (1.0, {"S1": 1.0, "S10": 1.0})
    assert (bare.score, dict(bare.labels)) == (1.0, {})
    sent = next(r for r in server.requests if "hello" in r["body"]["messages"][0]["content"])
    assert sent["body"]["messages"] == [{"role": "user", "content": "Classify: hello {not a field}"}]
    assert sent["body"]["model"] == "guard"
    assert sent["body"]["temperature"] == 0.0
    assert sent["body"]["max_tokens"] == 20
    assert sent["authorization"] == "Bearer secret-key"


async def test_base_url_may_end_in_v1(make_judge, server):
    monitor = make_judge(base_url=server.base_url + "/v1/")
    assert (await monitor.check(["hi"]))[0].score == 0.0


@pytest.mark.parametrize(
    "text, error",
    [
        ("GARBAGE", JudgeParseError),
        ("BADCATS", JudgeParseError),
        ("NOTCHAT", JudgeParseError),
    ],
)
async def test_garbage_raises(make_judge, text, error):
    monitor = make_judge()
    with pytest.raises(error):
        await monitor.check(["fine", text])


async def test_http_errors_raise(make_judge):
    import httpx

    with pytest.raises(httpx.HTTPStatusError):
        await make_judge().check(["HTTP500"])


async def test_texts_are_judged_concurrently(make_judge):
    monitor = make_judge()
    started = time.perf_counter()
    findings = await monitor.check([f"SLOW {i}" for i in range(5)])
    assert len(findings) == 5
    assert time.perf_counter() - started < 1.2  # five 0.3 s answers, not 1.5 s in a row


def test_options_are_validated():
    with pytest.raises(MonitorLoadError, match="prompt_template"):
        judge.create(MonitorSpec(name="judge", base_url="http://x", model="m", prompt_template="no slot"))
    with pytest.raises(MonitorLoadError, match="model"):
        judge.create(MonitorSpec(name="judge", base_url="http://x"))
    with pytest.raises(MonitorLoadError, match="temprature"):
        judge.create(MonitorSpec(name="judge", base_url="http://x", model="m", temprature=0))


@pytest.mark.parametrize("on_error, blocked, fail_open", [("closed", True, 0.0), ("open", False, 1.0)])
async def test_pipeline_on_garbage_follows_on_error(server, prom, on_error, blocked, fail_open):
    pipeline = MonitorPipeline(
        [MonitorSpec(name="judge", base_url=server.base_url, model="guard", on_error=on_error, timeout_ms=5000)],
        metrics=MonitorMetrics(prom),
        registry=MonitorRegistry.from_entry_points(),
    )
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["GARBAGE"], request_id="r1")
        assert result.blocked == blocked
        assert [d.error for d in result.decisions] == ["error"]
        labels = {"monitor": "judge", "stage": "input"}
        assert prom.get_sample_value("taxgate_monitor_errors_total", {**labels, "kind": "error"}) == 1.0
        assert (prom.get_sample_value("taxgate_monitor_fail_open_total", labels) or 0.0) == fail_open
        unsafe = await pipeline.check("input", ["UNSAFE"], request_id="r2")
        assert unsafe.blocked_by is not None and unsafe.blocked_by.labels == {"S1": 1.0, "S10": 1.0}
    finally:
        await pipeline.close()
