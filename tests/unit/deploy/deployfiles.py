"""Reading deploy/: the dashboard's and the rules' PromQL, and the metric names the code exports.

Shared by the unit tests here and by tests/integration/test_observability.py, so the
offline checks and the real-Prometheus check read the files the same way.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import shutil
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "taxgate.json"
GENERATOR = DEPLOY / "grafana" / "build_dashboard.py"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))

# Grafana's template variables, as the dashboard's "All" selection expands them.
# $__rate_interval is Grafana's own; one minute covers a test's traffic.
TEMPLATE_VALUES = {"$__rate_interval": "1m", "${model}": ".*", "$model": ".*"}

# Exported metric names start with our prefix or vLLM's; recording rules are
# level:metric:operation. The look-behind keeps the metric part of a recording rule's
# name (…:taxgate_x:…) from counting as a raw metric.
_RAW_METRIC = re.compile(r"(?<![\w:])(taxgate_[a-z0-9_]+|vllm:[a-z0-9_]+)")
_RECORDED = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)")


def load_generator() -> ModuleType:
    """deploy/grafana/build_dashboard.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_dashboard", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every query of every panel, as written."""
    return [(panel["title"], t["expr"]) for panel in dashboard()["panels"] for t in panel.get("targets", [])]


def to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, ready for Prometheus."""
    for variable, value in TEMPLATE_VALUES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown template variable left in {expr!r}")
    return expr


def rules() -> list[dict]:
    """Every rule of every rule file (recording and alerting)."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            found.extend(group["rules"])
    return found


def recording_rules() -> list[dict]:
    return [rule for rule in rules() if "record" in rule]


def alerting_rules() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def raw_metrics(expr: str) -> set[str]:
    return set(_RAW_METRIC.findall(expr))


def recorded_names(expr: str) -> set[str]:
    return set(_RECORDED.findall(expr))


@cache
def exported_names() -> frozenset[str]:
    """Sample names the gateway, its monitors and the simulator (as vLLM) can export."""
    from gateway.metrics import GatewayMetrics
    from loadtest.sim.engine import SimEngine
    from loadtest.sim.metrics import SimCollector
    from loadtest.sim.timing import get_profile

    registry = CollectorRegistry()
    GatewayMetrics(registry)
    names: set[str] = set()
    # Labelled metrics export no sample until used, so derive names from the type.
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    sim = CollectorRegistry()
    sim.register(SimCollector(SimEngine(get_profile("tiny-cpu"), random.Random(0)), "m"))
    for family in sim.collect():
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def tool(name: str) -> str | None:
    """A command-line tool on PATH or in the running virtualenv's bin/."""
    import sys

    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
