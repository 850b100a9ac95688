"""The judge monitor against a real vLLM server.

The served model has random weights, so its answers are noise, never the
``safe``/``unsafe`` protocol: the judge must refuse to guess (JudgeParseError)
and the pipeline must then follow ``on_error`` exactly, counting what it did.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitors.builtin import judge
from monitors.builtin.judge import JudgeParseError
from monitors.config import MonitorSpec
from monitors.metrics import MonitorMetrics
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry

pytestmark = pytest.mark.integration

# Two cores share vLLM's engine and the tests: allow a slow first request.
TIMEOUT_MS = 60_000


def judge_spec(server, **extra) -> MonitorSpec:
    return MonitorSpec(
        name="judge", base_url=server.base_url, model=server.model, max_tokens=16, timeout_ms=TIMEOUT_MS, **extra
    )


async def test_noise_from_the_model_is_a_parse_error(vllm_server):
    monitor = judge.create(judge_spec(vllm_server))
    try:
        with pytest.raises(JudgeParseError):
            await monitor.check(["How do I bake sourdough bread?", "Tell me a joke."])
    finally:
        await monitor.close()


@pytest.mark.parametrize("on_error, blocked, fail_open", [("closed", True, 0.0), ("open", False, 1.0)])
async def test_pipeline_follows_on_error(vllm_server, on_error, blocked, fail_open):
    prom = CollectorRegistry()
    events = []
    pipeline = MonitorPipeline(
        [judge_spec(vllm_server, id="guard", on_error=on_error)],
        metrics=MonitorMetrics(prom),
        registry=MonitorRegistry.from_entry_points(),
        on_event=lambda decision, request_id: events.append((decision, request_id)),
    )
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["What is the capital of France?"], request_id="vllm-1")
    finally:
        await pipeline.close()
    [decision] = result.decisions
    assert decision.error == "error", "a random model must not be read as a verdict"
    assert result.blocked == blocked
    assert decision.failed_open == (not blocked)
    assert events == [(decision, "vllm-1")]
    labels = {"monitor": "guard", "stage": "input"}
    assert prom.get_sample_value("taxgate_monitor_errors_total", {**labels, "kind": "error"}) == 1.0
    assert (prom.get_sample_value("taxgate_monitor_fail_open_total", labels) or 0.0) == fail_open
    action = "block" if blocked else "pass"
    assert prom.get_sample_value("taxgate_monitor_verdicts_total", {**labels, "action": action}) == 1.0
