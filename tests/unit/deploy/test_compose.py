"""deploy/compose.yaml: valid against the Compose Specification, and its parts fit together.

The schema is the Compose Specification's JSON schema as vendored by check-jsonschema
(``vendor.compose-spec``). It checks structure, not what the Docker engine would do
(no engine here): the cross-checks below cover mounts, profiles and scrape targets.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.deploy import deployfiles as files

COMPOSE = files.DEPLOY / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_validates_against_the_compose_spec():
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail(
            "check-jsonschema is not installed: pip install check-jsonschema "
            "(it ships the Compose Specification's schema)"
        )
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bind_mounts_env_files_and_build_context_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (files.DEPLOY / source).exists(), f"{name}: {source} missing"
        for env_file in service.get("env_file", []):
            assert (files.DEPLOY / env_file).is_file(), f"{name}: {env_file} missing"
        build = service.get("build")
        if build:
            context = files.DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file(), name


def test_upstream_alias_is_served_by_each_upstream_profile():
    services = compose()["services"]
    gateway_url = urlsplit(services["gateway"]["environment"]["TAXGATE_UPSTREAMS"])
    for name, profile in (("vllm", "gpu"), ("sim", "cpu")):
        service = services[name]
        assert service["profiles"] == [profile]
        assert gateway_url.hostname in service["networks"]["default"]["aliases"]
    assert "--port" in services["sim"]["command"]
    assert str(gateway_url.port) == services["sim"]["command"][services["sim"]["command"].index("--port") + 1]
    assert f"--port {gateway_url.port}" in services["vllm"]["command"][0]


def test_always_on_services_depend_on_profile_services_only_optionally():
    services = compose()["services"]
    for name, service in services.items():
        if service.get("profiles"):
            continue
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {dep: {} for dep in depends}
        for dep, condition in depends.items():
            if services[dep].get("profiles"):
                assert condition.get("required") is False, f"{name} -> {dep}"


def test_prometheus_scrapes_the_gateway_and_the_upstream():
    config = yaml.safe_load((files.DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = compose()["services"]
    reachable = set(services)
    for service in services.values():
        reachable.update(service.get("networks", {}).get("default", {}).get("aliases", []))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for job in ("taxgate", "vllm"):
        for target in targets[job]:
            host, port = target.split(":")
            assert host in reachable, f"{job}: {host} is no compose service or alias"
    assert targets["taxgate"] == ["gateway:8080"]


def test_grafana_gets_the_generated_dashboard_and_the_datasource():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    in_container = mounts["./grafana/dashboards"]
    assert (files.DASHBOARD.parent / "taxgate.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == in_container + "/taxgate.json"
    provisioning = files.DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "taxgate.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == in_container
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert urlsplit(datasource["url"]).hostname in compose()["services"]


def test_locust_profile_runs_the_project_locustfile_against_the_gateway():
    services = compose()["services"]
    master, worker = services["locust-master"], services["locust-worker"]
    assert master["profiles"] == worker["profiles"] == ["loadtest"]
    assert master["build"]["args"]["EXTRAS"] == "bench"
    assert "http://gateway:8080" in master["command"]
    assert (files.ROOT / "loadtest" / "locustfile.py").is_file()
    assert worker["command"][worker["command"].index("--master-host") + 1] == "locust-master"


def test_guard_profiles_serve_the_classifier_the_guard_config_calls():
    services = compose()["services"]
    guard_config = yaml.safe_load((files.DEPLOY / "config" / "taxgate-guard.yaml").read_text())
    (classifier,) = [m for m in guard_config["monitors"] if m["name"] == "classifier"]
    host = urlsplit(classifier["base_url"]).hostname
    for name, profile in (("guard", "guard"), ("guard-gpu", "guard-gpu")):
        service = services[name]
        assert service["profiles"] == [profile]
        assert host in service["networks"]["default"]["aliases"]
        assert "--runner pooling" in service["command"][0]
    gateway = services["gateway"]
    assert "/etc/taxgate/${TAXGATE_CONFIG:-taxgate.yaml}" in gateway["command"]
    assert "./config/taxgate-guard.yaml:/etc/taxgate/taxgate-guard.yaml:ro" in gateway["volumes"]
