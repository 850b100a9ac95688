"""Traces in deploy/: one collector config for compose and Kubernetes, and the gateway and
vLLM pointed at the collector each render ships."""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from gateway.settings import load_settings
from tests.unit.deploy import deployfiles as files
from tests.unit.deploy.test_k8s import find, render

COMPOSE_COLLECTOR = files.DEPLOY / "otel" / "collector.yaml"
K8S_COLLECTOR = files.DEPLOY / "k8s" / "components" / "otel-collector" / "collector.yaml"
OTLP_PORTS = {"grpc": 4317, "http": 4318}


def collector_config() -> dict:
    return yaml.safe_load(COMPOSE_COLLECTOR.read_text())


def test_compose_and_kubernetes_ship_the_same_collector_config():
    # kustomize cannot read files outside its folder: the component keeps a copy.
    assert COMPOSE_COLLECTOR.read_text() == K8S_COLLECTOR.read_text()


def test_the_collector_receives_otlp_over_grpc_and_http_into_a_traces_pipeline():
    config = collector_config()
    protocols = config["receivers"]["otlp"]["protocols"]
    assert {name: int(spec["endpoint"].rsplit(":", 1)[1]) for name, spec in protocols.items()} == OTLP_PORTS
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert set(pipeline["exporters"]) <= set(config["exporters"])
    assert set(pipeline["processors"]) <= set(config["processors"])


def test_compose_points_the_gateway_and_vllm_at_its_collector():
    compose = yaml.safe_load((files.DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert "otel-collector" in services
    env = services["gateway"]["environment"]
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("otel-collector", OTLP_PORTS["http"])
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert "--otlp-traces-endpoint http://otel-collector:4317" in services["vllm"]["command"][0]
    # The gateway reads those variables into its tracing settings: on, to the collector.
    container_env = {k: str(v) for k, v in env.items() if k.startswith("OTEL_")}
    container_env["OTEL_SDK_DISABLED"] = "false"  # compose's default
    tracing = load_settings(env={"TAXGATE_UPSTREAMS": "http://upstream:8000", **container_env}).tracing
    assert tracing.enabled and tracing.export_url() == "http://otel-collector:4318/v1/traces"


def test_the_gpu_overlay_points_the_gateway_and_vllm_at_the_collector_service():
    docs = render("overlays/gpu")
    (service,) = find(docs, "Service", "otel-collector")
    ports = {p["port"] for p in service["spec"]["ports"]}
    (gateway,) = find(docs, "Deployment", "taxgate")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector" and endpoint.port in ports
    (vllm,) = find(docs, "Deployment", "vllm")
    [flag] = [
        a for a in vllm["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--otlp-traces-endpoint=")
    ]
    traces = urlsplit(flag.split("=", 1)[1])
    assert traces.hostname == "otel-collector" and traces.port == OTLP_PORTS["grpc"] in ports
