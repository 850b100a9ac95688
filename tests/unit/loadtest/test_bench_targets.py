"""--target endpoints: flags, scenarios, comparisons against direct, probes, /metrics, the report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from loadtest.bench import cpu
from loadtest.bench.aggregate import cell_stats
from loadtest.bench.headline import headline_rows
from loadtest.bench.kit import machine_description
from loadtest.bench.matrix import load_matrix
from loadtest.bench.options import BenchOptions
from loadtest.bench.plots import PLOT_FILES, write_plots
from loadtest.bench.precision import comparisons, extra_repeat
from loadtest.bench.report import build_report, render_markdown
from loadtest.bench.runner import BenchResult
from loadtest.bench.samples import Sample
from loadtest.bench.scenarios import build_scenarios
from loadtest.bench.targets import (
    Target,
    TargetAuth,
    TargetError,
    TargetReport,
    counter_deltas,
    counters,
    parse_targets,
    probe,
    redact_argv,
    run_scenarios,
    with_targets,
)
from loadtest.bench.tax import tax_rows

MODEL = "sim-llama-8b"


def test_targets_and_their_keys_from_flags():
    targets = parse_targets(
        ["deployed=http://gw.example:8080/v1/", "router=https://r.example"],
        ["deployed=k1", "router=env:ROUTER_KEY"],
        {"ROUTER_KEY": "k2"},
    )
    assert [(t.name, t.url, t.api_key) for t in targets] == [
        ("deployed", "http://gw.example:8080", "k1"),
        ("router", "https://r.example", "k2"),
    ]
    assert "k1" not in repr(targets[0])  # a key never shows in a repr (logs, tracebacks)


@pytest.mark.parametrize(
    ("pairs", "keys", "message"),
    [
        (["deployed"], [], "NAME=URL"),
        (["direct=http://x"], [], "not direct"),
        (["a=http://x", "a=http://y"], [], "twice"),
        (["a=gw:8080"], [], "http://"),
        (["a=http://x"], ["b=k"], "no --target named 'b'"),
        (["a=http://x"], ["a=env:UNSET_VAR"], "$UNSET_VAR is not set"),
        (["a=http://x", "b=http://x/v1"], ["a=k"], "same URL but not the same key"),
    ],
)
def test_bad_target_flags_say_what_to_do(pairs, keys, message):
    with pytest.raises(TargetError, match=message.replace("$", r"\$")):
        parse_targets(pairs, keys, {})


def test_keys_are_hidden_in_the_command_line_of_the_report():
    argv = ["--target-key", "a=secret1", "--target-key=b=secret2", "--target-key=c=env:VAR", "x"]
    assert redact_argv(argv) == ["--target-key", "a=***", "--target-key=b=***", "--target-key=c=env:VAR", "x"]


def test_sets_none_runs_direct_and_the_targets_only():
    matrix = load_matrix()
    target = Target("deployed", "http://gw")
    scenarios = run_scenarios(matrix, ("none",), (target,))
    assert [s.name for s in scenarios] == ["direct", "deployed"]
    assert scenarios[1].is_target and not scenarios[1].has_gateway
    both = with_targets(build_scenarios(matrix, ["pii"]), [target], ("pii",))
    assert [s.name for s in both] == ["direct", "gateway", "pii", "deployed"]
    with pytest.raises(TargetError, match="give one"):
        with_targets(build_scenarios(matrix, []), [], ("none",))
    with pytest.raises(TargetError, match="a monitor set of the matrix has that name"):
        with_targets(build_scenarios(matrix, ["pii"]), [Target("pii", "http://x")], ("pii",))


def round_of(ttft: float, n: int = 6) -> list[Sample]:
    return [Sample(100.0 + i, 200, ttft, 0.5, (0.05,) * 8, 9, user=0) for i in range(n)]


def test_a_target_is_compared_with_direct_only():
    names = ["direct", "gateway", "pii", "deployed"]
    cells = {(n, 4): cell_stats(n, 4, [round_of(0.1 + i * 0.01) for i in range(2)]) for n in names}
    rows = {(r.scenario, r.baseline) for r in tax_rows(cells, names, (4,), targets={"deployed"})}
    assert ("deployed", "direct") in rows and ("deployed", "gateway") not in rows
    assert ("pii", "gateway") in rows  # monitor sets keep both baselines
    assert comparisons(names, {"deployed"}) == [("gateway", "direct"), ("pii", "gateway"), ("deployed", "direct")]
    # Without a gateway of the bench's own (--sets none) the target still has its pair.
    assert comparisons(["direct", "deployed"], {"deployed"}) == [("deployed", "direct")]
    assert extra_repeat(["direct", "deployed"], [("deployed", "direct")]) == ["direct", "deployed"]


def synthetic_result(tmp_path) -> BenchResult:
    target = Target("deployed", "http://gw.example:8080", "secret")
    scenarios = [*build_scenarios(load_matrix(), [])[:1], target.scenario()]
    cells = {}
    for name, extra in (("direct", 0.0), ("deployed", 0.02)):
        rounds = [round_of(0.1 + extra + r * 0.001) for r in range(3)]
        load = [{cpu.LOAD_GENERATOR: 1.4, cpu.LOAD_BUSIEST: 0.6, cpu.MACHINE: 1.5}] * 3
        cells[(name, 16)] = cell_stats(name, 16, rounds, load)
    options = BenchOptions(
        out=tmp_path,
        concurrency=(16,),
        repeats=3,
        warmup_s=0,
        max_tokens=8,
        sets=("none",),
        targets=(target,),
        load_workers=2,
    )
    report = TargetReport(
        target,
        taxgate=True,
        counters=[("taxgate_monitor_skipped_total", {"monitor": "pii", "stage": "output", "reason": "late"}, 3.0)],
        notes=["read"],
    )
    return BenchResult(
        options=options,
        scenarios=scenarios,
        cells=cells,
        safety={},
        timings={},
        model=MODEL,
        upstream_kind="external",
        wall_s=1.0,
        started_at=datetime(2026, 1, 2, tzinfo=UTC),
        targets=[report],
        missing=["--target gone is unreachable at http://127.0.0.1:9"],
    )


def test_the_report_shows_the_target_against_direct_in_the_headline(tmp_path):
    report = build_report(synthetic_result(tmp_path), {**machine_description(), "cpu_count": 4})
    assert [(h.scenario, h.baseline) for h in report.headline] == [("deployed", "direct")]
    assert report.headline[0].ttft_p50_ms.value == pytest.approx(20.0, abs=0.5)
    (row,) = report.targets
    assert row.taxgate and row.counters[0].metric == "taxgate_monitor_skipped_total"
    assert any("CPU" in unknown for unknown in row.unknown)
    assert report.meta.missing == ["--target gone is unreachable at http://127.0.0.1:9"]
    # Two workers at 0.6 cores each: 1.4 in all, but no process is near its core.
    assert "client-bound" not in report.scenarios[0].flags
    plots = write_plots(report, tmp_path / "plots")  # the target in every plot, no CPU bar
    assert [p.name for p in plots] == list(PLOT_FILES[:2])  # no safety pass: no Pareto plot
    markdown = render_markdown(report, [])
    assert "## Targets (endpoints the bench did not start)" in markdown
    assert "monitor_skipped{monitor=pii,stage=output,reason=late} +3" in markdown
    assert "MISSING: --target gone" in markdown


def test_headline_rows_put_targets_against_direct():
    report = build_report(synthetic_result(None), {**machine_description(), "cpu_count": 4})
    assert headline_rows(report.tax, [], report.scenarios, 16) == []  # not a target: no pair
    assert len(headline_rows(report.tax, [], report.scenarios, 16, {"deployed"})) == 1


def test_the_busiest_load_process_decides_client_bound():
    assert cpu.CLIENT_BOUND in cpu.saturation_flags({cpu.LOAD_GENERATOR: 0.9}, 4)
    assert cpu.CLIENT_BOUND not in cpu.saturation_flags({cpu.LOAD_GENERATOR: 1.6, cpu.LOAD_BUSIEST: 0.8}, 4)
    assert cpu.CLIENT_BOUND in cpu.saturation_flags({cpu.LOAD_GENERATOR: 1.2, cpu.LOAD_BUSIEST: 0.9}, 4)


METRICS_BEFORE = """# TYPE taxgate_monitor_skipped_total counter
taxgate_monitor_skipped_total{monitor="pii",stage="output",reason="late"} 2
# TYPE taxgate_requests_total counter
taxgate_requests_total{route="chat",model="m",status="200"} 10
taxgate_requests_total{route="chat",model="m",status="503"} 1
"""
METRICS_AFTER = METRICS_BEFORE.replace("} 2", "} 5").replace("} 10", "} 90").replace('"503"} 1', '"503"} 4')


def test_counter_deltas_keep_what_went_wrong():
    rows = counter_deltas(counters(METRICS_BEFORE), counters(METRICS_AFTER))
    assert rows == [
        ("taxgate_monitor_skipped_total", {"monitor": "pii", "reason": "late", "stage": "output"}, 3.0),
        ("taxgate_requests_total", {"model": "m", "route": "chat", "status": "503"}, 3.0),
    ]  # the 80 answered requests are not news


def stub_target(models: list[str], status: int = 200, answer: int = 200) -> Starlette:
    """A stand-in OpenAI server for the probe's branches (the real ones: integration tests)."""

    async def list_models(request):
        if request.headers.get("authorization") != "Bearer right":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        return JSONResponse({"data": [{"id": m} for m in models]}, status_code=status)

    async def chat(_request):
        if answer != 200:
            return JSONResponse({"error": {"message": "overloaded", "code": "busy"}}, status_code=answer)
        return JSONResponse({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})

    return Starlette(
        routes=[
            Route("/v1/models", list_models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/metrics", lambda _r: PlainTextResponse("up 1\n")),
        ]
    )


def probe_stub(app: Starlette, key: str = "right") -> str | None:
    target = Target("t", "http://t.test", key)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), auth=TargetAuth([target])) as client:
            return await probe(client, target, MODEL)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("app", "key", "problem"),
    [
        (stub_target([MODEL]), "right", None),
        (stub_target([MODEL]), "wrong", "give its key with --target-key t=KEY"),
        (stub_target(["other-model"]), "right", "serves other-model, not 'sim-llama-8b'"),
        (stub_target([MODEL], status=500), "right", "answered HTTP 500 to GET /v1/models"),
        (stub_target([MODEL], answer=503), "right", "failed a test request: HTTP 503: overloaded"),
    ],
)
def test_probe_says_why_a_target_cannot_be_measured(app, key, problem):
    found = probe_stub(app, key)
    assert found == problem if problem is None else problem in found


def test_an_unreachable_target_is_named_with_its_url():
    target = Target("gone", "http://127.0.0.1:9")

    async def go():
        async with httpx.AsyncClient(timeout=2.0) as client:
            return await probe(client, target, MODEL)

    assert asyncio.run(go()).startswith("is unreachable at http://127.0.0.1:9 (ConnectError")


def test_target_auth_only_adds_the_key_to_its_own_target():
    auth = TargetAuth([Target("a", "http://a.test", "ka"), Target("b", "http://b.test")])
    seen = {}

    def handler(request):
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        for url in ("http://a.test/v1/models", "http://b.test/v1/models", "http://a.testx/"):
            client.get(url)
    assert seen == {"a.test": "Bearer ka", "b.test": None, "a.testx": None}
