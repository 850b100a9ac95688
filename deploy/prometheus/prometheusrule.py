"""Prints deploy/prometheus/rules/*.yml as one PrometheusRule for the Prometheus Operator.

    python deploy/prometheus/prometheusrule.py --release prometheus \
        | kubectl apply -n monitoring -f -

The rule files stay the one source (plain Prometheus and compose load them as they
are); the operator only accepts rules wrapped in this custom resource.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

RULES_DIR = Path(__file__).resolve().parent / "rules"


def prometheus_rule(release: str) -> dict:
    groups = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        # kube-prometheus-stack picks up rules labelled with its Helm release name.
        "metadata": {"name": "taxgate", "labels": {"app.kubernetes.io/name": "taxgate", "release": release}},
        "spec": {"groups": groups},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--release", default="prometheus", help="kube-prometheus-stack Helm release name (default: prometheus)"
    )
    args = parser.parse_args(argv)
    sys.stdout.write(yaml.safe_dump(prometheus_rule(args.release), sort_keys=False, width=120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
