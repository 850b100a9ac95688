"""Kubernetes manifests: every kustomization renders, validates offline, and hangs together.

Rendering uses ``kubectl kustomize`` (kubectl ships kustomize). Validation uses
kubernetes-validate's bundled OpenAPI schemas, strict (unknown fields fail), for the
oldest and newest Kubernetes we claim. ServiceMonitor is a CRD of the Prometheus
Operator with no schema in that bundle: it is checked structurally instead (kind,
selector and endpoint port resolve to a Service in the same render).
"""

from __future__ import annotations

import subprocess
from functools import cache
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy import deployfiles as files

K8S = files.DEPLOY / "k8s"
# What a user applies; base, vllm and sim are parts of these.
APPLIED = ("overlays/cpu", "overlays/gpu", "overlays/gpu-guard", "loadtest", "bench")
ALL_KUSTOMIZATIONS = ("base", "vllm", "sim", "guard", *APPLIED)
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/",)
GATEWAY_UID = 10001  # USER in deploy/Dockerfile
# Referenced but created by hand, as each kustomization's header explains.
EXTERNAL = {
    "overlays/gpu": {("Secret", "taxgate-api-keys"), ("Secret", "taxgate-audit-db")},
    "overlays/gpu-guard": {("Secret", "taxgate-api-keys"), ("Secret", "taxgate-audit-db")},
    "loadtest": {("Secret", "taxgate-api-keys")},
    "bench": {("Secret", "taxgate-api-keys")},
    "base": {("Secret", "taxgate-api-keys")},
}


@cache
def render(path: str) -> tuple[dict, ...]:
    kubectl = files.tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: it renders the kustomizations (kubectl kustomize)")
    result = subprocess.run([kubectl, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(docs, kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def pod_specs(docs) -> list[tuple[str, dict]]:
    """(workload name, pod template) of every Deployment and Job."""
    return [
        (d["metadata"]["name"], d["spec"]["template"])
        for d in docs
        if d["kind"] in {"Deployment", "Job", "StatefulSet"}
    ]


def is_crd(doc: dict) -> bool:
    return doc["apiVersion"].startswith(CRD_GROUPS)


@pytest.mark.parametrize("path", ALL_KUSTOMIZATIONS)
def test_kustomization_renders(path):
    assert render(path)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", APPLIED)
def test_resources_validate_strictly(path, version):
    checked = 0
    for doc in render(path):
        if is_crd(doc):
            continue  # no schema offline: see test_service_monitors_select_a_service
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{path}: {doc['kind']}/{doc['metadata']['name']} is invalid for "
                f"Kubernetes {version}: {exc.message} at {list(exc.path)}"
            )
        checked += 1
    assert checked


@pytest.mark.parametrize("path", APPLIED)
def test_service_monitors_select_a_service_and_port(path):
    docs = render(path)
    for monitor in find(docs, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in find(docs, "Service") if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert len(services) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(services)} Services"
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("path", APPLIED)
def test_services_select_pods_and_named_ports(path):
    docs = render(path)
    pods = pod_specs(docs)
    for service in find(docs, "Service"):
        selector = service["spec"]["selector"]
        matching = [t for _, t in pods if selector.items() <= t["metadata"]["labels"].items()]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        names = {p["name"] for t in matching for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)


@pytest.mark.parametrize("path", APPLIED)
def test_workload_selectors_match_their_templates(path):
    for doc in render(path):
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("path", APPLIED)
def test_referenced_configmaps_and_secrets_exist(path):
    docs = render(path)
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    external = EXTERNAL.get(path, set())
    for workload, template in pod_specs(docs):
        for ref in _references(template["spec"]):
            assert ref in present or ref in external, f"{workload} needs {ref}, not in {path}"


def _references(spec: dict):
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source and not source[key].get("optional"):
                    yield kind, source[key]["name"]
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in value_from and not value_from[key].get("optional"):
                    yield kind, value_from[key]["name"]


@pytest.mark.parametrize("path", ("overlays/cpu", "overlays/gpu", "overlays/gpu-guard"))
def test_gateway_pod_is_hardened_and_probed(path):
    (deployment,) = find(render(path), "Deployment", "taxgate")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == GATEWAY_UID
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"]
    # With a read-only root, everything the gateway writes needs a volume.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/taxgate", "/var/lib/taxgate", "/tmp"} <= mounts


@pytest.mark.parametrize("path", APPLIED)
def test_non_vllm_pods_run_as_non_root(path):
    for workload, template in pod_specs(render(path)):
        if workload in ("vllm", "guard"):
            continue  # vLLM's own images run as root (documented in their manifests)
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True, workload
        for container in template["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, workload


@pytest.mark.parametrize("path", ("overlays/cpu", "overlays/gpu"))
def test_gateway_upstream_is_a_service_in_the_same_render(path):
    docs = render(path)
    (deployment,) = find(docs, "Deployment", "taxgate")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for url in env["TAXGATE_UPSTREAMS"]["value"].split(","):
        parts = urlsplit(url)
        (service,) = find(docs, "Service", parts.hostname)
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}


def test_scaling_objects_target_the_gateway():
    docs = render("overlays/gpu")
    (hpa,) = find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "taxgate"}
    (pdb,) = find(docs, "PodDisruptionBudget")
    (deployment,) = find(docs, "Deployment", "taxgate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_in_flight_autoscaling_uses_the_gateway_gauge_through_the_adapter():
    (hpa,) = find(render("overlays/gpu"), "HorizontalPodAutoscaler")
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == ["taxgate_in_flight_requests"]
    assert "taxgate_in_flight_requests" in files.exported_names()
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == pods_metrics[0]
    assert files.raw_metrics(rule["seriesQuery"]) == {"taxgate_in_flight_requests"}


def test_cpu_overlay_scales_down_for_small_clusters():
    (hpa,) = find(render("overlays/cpu"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 1


def test_load_test_drives_the_gateway_service():
    (service,) = find(render("base"), "Service", "taxgate")
    port = service["spec"]["ports"][0]["port"]
    (master,) = find(render("loadtest"), "Job", "locust-master")
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--host=http://taxgate:{port}" in args


def test_gpu_overlay_takes_the_audit_dsn_from_a_secret_and_names_each_pod():
    [deployment] = find(render("overlays/gpu"), "Deployment", "taxgate")
    [gateway] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    env = {e["name"]: e for e in gateway["env"]}
    assert env["TAXGATE_AUDIT__DSN"]["valueFrom"]["secretKeyRef"] == {"name": "taxgate-audit-db", "key": "dsn"}
    assert env["TAXGATE_AUDIT__REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "TAXGATE_UPSTREAMS" in env and "TAXGATE_API_KEYS" in env  # merged, not replaced


def test_the_guard_overlay_points_the_classifier_at_the_guard_service_and_scales_it_apart():
    docs = render("overlays/gpu-guard")
    (deployment,) = find(docs, "Deployment", "taxgate")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (config_name,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    (config,) = find(docs, "ConfigMap", config_name)
    settings = yaml.safe_load(config["data"]["taxgate.yaml"])
    (classifier,) = [m for m in settings["monitors"] if m["name"] == "classifier"]
    url = urlsplit(classifier["base_url"])
    (service,) = find(docs, "Service", url.hostname)
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    (guard,) = find(docs, "Deployment", "guard")
    (container,) = guard["spec"]["template"]["spec"]["containers"]
    assert "--runner pooling" in container["args"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # guard-gpu applied
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in find(docs, "HorizontalPodAutoscaler")}
    assert hpas == {"taxgate", "guard"}
    # Without guard-gpu the guard runs on CPU (the default).
    (cpu_guard,) = find(render("guard"), "Deployment", "guard")
    assert "nvidia.com/gpu" not in cpu_guard["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]


def _args(docs, job: str) -> dict[str, str]:
    """A Job's ``--flag=value`` arguments (its single container's)."""
    (doc,) = find(docs, "Job", job)
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"] if "=" in arg)


def _service_port(docs, url: str) -> None:
    parts = urlsplit(url)
    (service,) = find(docs, "Service", parts.hostname)
    assert parts.port in {p["port"] for p in service["spec"]["ports"]}, url


def test_bench_job_measures_the_deployed_gateway_against_its_vllm():
    bench = _args(render("bench"), "taxgate-bench")
    name, _, url = bench["target"].partition("=")
    _service_port(render("base"), url)  # the gateway Service
    _service_port(render("vllm"), bench["upstream"])  # what the gpu overlay's gateway fronts
    (gateway,) = find(render("overlays/gpu"), "Deployment", "taxgate")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert bench["upstream"] in env["TAXGATE_UPSTREAMS"].split(",")
    # The key comes from the environment (a Secret), never as a literal argument.
    assert bench["target-key"] == f"{name}=env:BENCH_TARGET_KEY"
    assert bench["sets"] == "none"


def test_bench_workers_join_the_bench_master_and_match_its_count():
    docs = render("bench")
    bench, worker = _args(docs, "taxgate-bench"), _args(docs, "taxgate-bench-worker")
    host, port = worker["master"].rsplit(":", 1)
    (service,) = find(docs, "Service", host)
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    # The Service's named target port is the one the bench's Locust master binds.
    (job,) = find(docs, "Job", "taxgate-bench")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(bench["master-bind"].rsplit(":", 1)[1]) == ports[service_port["targetPort"]]
    (workers,) = find(docs, "Job", "taxgate-bench-worker")
    assert workers["spec"]["parallelism"] == workers["spec"]["completions"] == int(bench["expect-workers"])


def test_bench_leaves_its_report_in_a_volume():
    docs = render("bench")
    (job,) = find(docs, "Job", "taxgate-bench")
    spec = job["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    }
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] in claims]
    assert find(docs, "PersistentVolumeClaim", claims[mount["name"]])
    out = _args(docs, "taxgate-bench")["out"]
    assert out.startswith(mount["mountPath"] + "/")


def test_only_the_bench_workers_reach_its_master_port():
    docs = render("bench")
    (policy,) = find(docs, "NetworkPolicy", "taxgate-bench-master")
    (job,) = find(docs, "Job", "taxgate-bench")
    (workers,) = find(docs, "Job", "taxgate-bench-worker")
    master_labels = job["spec"]["template"]["metadata"]["labels"]
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= master_labels.items()
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert not source["podSelector"]["matchLabels"].items() <= master_labels.items()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert [p["port"] for p in rule["ports"]] == [p["name"] for p in container["ports"]]
