"""Prometheus config and rules: promtool accepts them, alert unit tests pass, names are real."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.unit.deploy import deployfiles as files

PROMETHEUS_DIR = files.DEPLOY / "prometheus"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "taxgate-rules.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = files.tool("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(apt-get install -y --no-install-recommends prometheus)"
        )
    return path


def run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_checks_the_rules(promtool):
    output = run(promtool, "check", "rules", *map(str, files.RULE_FILES))
    assert "SUCCESS" in output


def test_promtool_checks_the_compose_prometheus_config(promtool):
    run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))


def test_alert_unit_tests_pass(promtool):
    # Paths in the test file are relative to it.
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_exercised_by_the_unit_tests():
    tested = RULE_TESTS.read_text(encoding="utf-8")
    untested = [rule["alert"] for rule in files.alerting_rules() if f'alertname="{rule["alert"]}"' not in tested]
    assert not untested, f"alerts with no promtool test: {untested}"


def test_every_alert_has_severity_summary_and_runbook():
    for rule in files.alerting_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"


def test_rules_use_only_exported_metrics_and_defined_records():
    exported = files.exported_names()
    defined = {rule["record"] for rule in files.recording_rules()}
    for rule in files.rules():
        name = rule.get("record") or rule["alert"]
        unknown = files.raw_metrics(rule["expr"]) - exported
        assert not unknown, f"{name}: metrics nothing exports: {sorted(unknown)}"
        undefined = files.recorded_names(rule["expr"]) - defined
        assert not undefined, f"{name}: undefined recording rules: {sorted(undefined)}"


def test_tax_is_recorded_per_percentile_for_ttft_and_e2e():
    quantiles: dict[str, set[str]] = {}
    for rule in files.recording_rules():
        quantiles.setdefault(rule["record"], set()).add(rule.get("labels", {}).get("quantile"))
    for metric in ("ttft", "e2e"):
        for side in (f"taxgate_{metric}_seconds", f"taxgate_upstream_{metric}_seconds"):
            assert quantiles[f"route_model:{side}:quantile1m"] == {"0.5", "0.95", "0.99"}
        assert f"route_model:taxgate_{metric}_tax_seconds:quantile1m" in quantiles


def test_compose_config_loads_the_rule_files_it_mounts():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    # The alerts find gateways by job name.
    assert "taxgate" in jobs and "vllm" in jobs


def test_prometheus_rule_for_the_operator_wraps_the_same_rules(promtool, tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROMETHEUS_DIR / "prometheusrule.py"), "--release", "kps"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resource = yaml.safe_load(result.stdout)
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["labels"]["release"] == "kps"
    names = [rule.get("record") or rule["alert"] for group in resource["spec"]["groups"] for rule in group["rules"]]
    assert sorted(names) == sorted(rule.get("record") or rule["alert"] for rule in files.rules())
    # What the operator hands Prometheus must still pass promtool.
    unwrapped = tmp_path / "unwrapped.yml"
    unwrapped.write_text(yaml.safe_dump(resource["spec"]))
    run(promtool, "check", "rules", str(unwrapped))
