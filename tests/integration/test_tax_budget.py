"""The tax budget through a real gateway: a slow judge server on loopback, the simulator as
the model. Skips are counted, late verdicts audited, a fail-closed judge never skipped."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.audit.filter import AuditFilter
from gateway.audit.query import query_events
from loadtest.sim import SimSettings, create_sim_app
from loadtest.slow_judge import SlowJudge
from tests.servers import ThreadedServer

pytestmark = pytest.mark.integration

JUDGE_S = 0.4
BUDGET_MS = 100


@pytest.fixture
def sim():
    app = create_sim_app(SimSettings(profile="instant", model="sim"), registry=CollectorRegistry())
    server = ThreadedServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def judge():
    app = SlowJudge(latency_s=JUDGE_S, slots=1)
    server = ThreadedServer(app).start()
    server.app = app
    yield server
    server.stop()


def judge_monitor(judge, **extra) -> dict:
    return {
        "name": "judge",
        "id": "guard",
        "stages": ["input"],
        "base_url": judge.base_url,
        "model": "guard",
        "timeout_ms": 2000,
        **extra,
    }


def ask(gateway, text: str) -> httpx.Response:
    return httpx.post(
        gateway.v1 + "/chat/completions",
        timeout=10,
        json={"model": "sim", "max_tokens": 4, "messages": [{"role": "user", "content": text}]},
    )


def in_background(gateway, text: str) -> tuple[threading.Thread, list]:
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(ask(gateway, text)))
    thread.start()
    return thread, answers


def wait_until(condition, timeout_s: float = 5) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_skip_monitor_gives_way_counts_every_skip_and_audits_late_verdicts(start_gateway, sim, judge):
    gateway = start_gateway(
        upstreams=[sim.base_url],
        budgets={"input": BUDGET_MS},
        monitors=[judge_monitor(judge, degrade="skip", on_error="open")],
    )
    labels = {"monitor": "guard", "stage": "input"}
    started = time.monotonic()
    late = ask(gateway, "say UNSAFE things")
    # Released at the budget: answered long before the judge's verdict.
    assert late.status_code == 200 and time.monotonic() - started < JUDGE_S
    assert gateway.sample("taxgate_monitor_skipped_total", reason="late", **labels) == 1
    # The verdict, when it came, went to the audit log as what enforcing would have done.
    audit = gateway.settings.audit.path
    assert wait_until(lambda: query_events(audit, AuditFilter(monitor="guard")))
    [event] = query_events(audit, AuditFilter(monitor="guard"))
    assert event.action == "shadow" and event.request_id == late.headers["x-request-id"]
    assert gateway.sample("taxgate_monitor_verdicts_total", action="shadow", **labels) == 1

    # One check in flight on the one slot: the next is predicted not to fit, never queued.
    thread, answers = in_background(gateway, "hello")
    assert wait_until(lambda: judge.app.waiting == 1)
    served_before = judge.app.served
    skipped = ask(gateway, "say UNSAFE things")
    assert skipped.status_code == 200
    assert gateway.sample("taxgate_monitor_skipped_total", reason="predicted", **labels) == 1
    thread.join()
    assert answers[0].status_code == 200
    assert wait_until(lambda: judge.app.waiting == 0)
    assert judge.app.served == served_before + 1  # the skipped check never reached the judge
    assert gateway.sample("taxgate_monitor_skipped_total", reason="late", **labels) == 2


def test_fail_closed_judge_is_never_skipped_and_sheds_with_503(start_gateway, sim, judge):
    gateway = start_gateway(
        upstreams=[sim.base_url], budgets={"input": BUDGET_MS}, monitors=[judge_monitor(judge)]
    )  # on_error: closed, degrade: never
    blocked = ask(gateway, "say UNSAFE things")
    # Waited past the budget for the verdict, and enforced it.
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"
    thread, answers = in_background(gateway, "hello")
    assert wait_until(lambda: judge.app.waiting == 1)
    shed = ask(gateway, "say UNSAFE things")
    assert shed.status_code == 503 and float(shed.headers["retry-after"]) >= 1
    assert shed.json()["error"]["code"] == "overloaded"
    thread.join()
    assert answers[0].status_code == 200
    labels = {"monitor": "guard", "stage": "input"}
    for reason in ("predicted", "late"):
        assert gateway.sample("taxgate_monitor_skipped_total", reason=reason, **labels) == 0
    assert gateway.sample("taxgate_monitor_errors_total", kind="overload", **labels) == 1
    assert gateway.sample("taxgate_monitor_checks_in_time_total", **labels) == 2


def test_the_budget_bench_runs_its_plan_and_reports_with_the_shared_statistics(tmp_path, capsys):
    # `taxgate bench budget` at one small level: real judge, simulator and two gateways as
    # child processes, 2 interleaved repeats per scenario.
    import orjson

    from gateway.cli import main

    code = main(
        [
            "bench",
            "budget",
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--repeats",
            "2",
            "--warmup",
            "0.3",
            "--judge-latency-ms",
            "50",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    rows = {row["scenario"]: row for row in report["rows"]}
    assert set(rows) == {"direct", "no-budget", "budget"}
    assert all(row["rounds"] == 2 and row["requests"] > 0 and row["failed"] == 0 for row in rows.values())
    for name in ("no-budget", "budget"):
        tax = rows[name]["ttft_tax_p50_ms"]
        assert tax["n"] == 2 and tax["ci_low"] <= tax["value"] <= tax["ci_high"]
        # Every answered request went through the judge or was counted as skipped.
        assert rows[name]["accounted"] >= 0.99
    assert rows["direct"]["ttft_tax_p50_ms"] is None
    assert (tmp_path / "budget.png").stat().st_size > 0 and "At 4 clients" in out
