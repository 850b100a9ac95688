"""The Grafana dashboard: generated, well-formed, and built only from names the code exports."""

from __future__ import annotations

import re

import pytest

from tests.unit.deploy import deployfiles as files


def test_committed_dashboard_is_the_generator_output():
    generator = files.load_generator()
    assert files.DASHBOARD.read_text(encoding="utf-8") == generator.render(), (
        "deploy/grafana/dashboards/taxgate.json is stale: run "
        "`python deploy/grafana/build_dashboard.py` and commit the result"
    )


def test_generator_check_mode_agrees():
    assert files.load_generator().main(["--check"]) == 0


def test_panels_have_unique_ids_and_fit_the_grid():
    panels = files.dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered


def test_every_query_panel_uses_the_datasource_variable():
    for panel in files.dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]


def test_template_variables_are_the_ones_the_tests_substitute():
    variables = {v["name"] for v in files.dashboard()["templating"]["list"]}
    assert variables == {"datasource", "model"}
    for _title, expr in files.dashboard_queries():
        files.to_promql(expr)  # raises on a variable the real-Prometheus test cannot fill


def test_every_metric_in_the_dashboard_is_exported():
    exported = files.exported_names()
    missing = {
        (title, name)
        for title, expr in files.dashboard_queries()
        for name in files.raw_metrics(expr)
        if name not in exported
    }
    assert not missing, f"dashboard queries name metrics nothing exports: {sorted(missing)}"


def test_recorded_series_in_the_dashboard_are_defined_by_the_rules():
    defined = {rule["record"] for rule in files.recording_rules()}
    used = {name for _, expr in files.dashboard_queries() for name in files.recorded_names(expr)}
    assert used and used <= defined, f"undefined recording rules: {sorted(used - defined)}"


def test_dashboard_covers_the_ops_view():
    """Each family the ops view needs (gateway and vLLM latencies side by side, the safety
    tax, monitor cost and failures, streaming hold-back and leaks) has a panel querying it."""
    exprs = " ".join(expr for _, expr in files.dashboard_queries())
    for needed in (
        "taxgate_requests_total",
        "taxgate_ttft_seconds",
        "taxgate_itl_seconds",
        "taxgate_e2e_seconds",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "taxgate_overhead_seconds",
        "taxgate_monitor_duration_seconds",
        "taxgate_monitor_queue_wait_seconds",
        "taxgate_monitor_batch_size",
        "taxgate_monitor_verdicts_total",
        "taxgate_monitor_errors_total",
        "taxgate_monitor_fail_open_total",
        "taxgate_in_flight_requests",
        "taxgate_stream_holdback_seconds",
        "taxgate_stream_leaked_tokens_total",
        "taxgate_ttft_tax_seconds",
    ):
        assert needed in exprs, needed


def test_vllm_names_are_the_ones_vllm_itself_defines():
    """The simulator exports vLLM's names; check them against vLLM's source when it is here."""
    sources = sorted(files.ROOT.glob(".venvs/vllm/lib/python*/site-packages/vllm/v1/metrics/loggers.py"))
    if not sources:
        pytest.skip("no vLLM environment in .venvs/vllm to read vllm/v1/metrics/loggers.py from")
    text = sources[0].read_text(encoding="utf-8")
    used = {
        name for _, expr in files.dashboard_queries() for name in files.raw_metrics(expr) if name.startswith("vllm:")
    }
    # vLLM declares base names; prometheus_client adds _total/_bucket to the samples.
    base = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    missing = {name for name in base if f'"{name}"' not in text}
    assert not missing, f"not declared in {sources[0]}: {sorted(missing)}"
