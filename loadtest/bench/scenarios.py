"""The scenarios of a bench run and the gateway configuration each one needs.

``direct`` sends traffic to the upstream itself; ``gateway`` goes through a gateway
with no monitors (the proxy tax); every monitor set of the matrix gets a gateway of
its own (the monitor tax). Pure: building a config touches no file or process.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.bench.matrix import Matrix
from loadtest.bench.tax import DIRECT, GATEWAY

CLASSIFIER = "classifier"  # the monitor served by an engine, filled in with --classifier-url
RANDOM_WEIGHTS_NOTE = "random weights, locally built: latency only, catch rates meaningless"


@dataclass(frozen=True)
class Scenario:
    """``monitors``/``streaming`` are None for ``direct`` (no gateway at all)."""

    name: str
    description: str
    monitors: tuple[dict[str, Any], ...] | None = None
    streaming: dict[str, Any] | None = None
    local_detoxify: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # An endpoint the bench did not start (``--target``): measured against direct only.
    external_url: str | None = None

    @property
    def has_gateway(self) -> bool:
        return self.monitors is not None

    @property
    def is_target(self) -> bool:
        return self.external_url is not None

    @property
    def is_monitor_set(self) -> bool:
        return self.name not in (DIRECT, GATEWAY) and not self.is_target


def build_scenarios(matrix: Matrix, set_names: list[str]) -> list[Scenario]:
    """``direct``, ``gateway``, then the chosen sets, in that (interleaving) order."""
    scenarios = [
        Scenario(DIRECT, "the upstream itself, no gateway"),
        Scenario(
            GATEWAY, "the gateway with no monitors (proxy tax)", monitors=(), streaming=matrix.streaming_for_default()
        ),
    ]
    for name in set_names:
        spec = matrix.sets[name]
        notes = (RANDOM_WEIGHTS_NOTE,) if spec.local_detoxify else ()
        scenarios.append(
            Scenario(
                name=name,
                description=spec.description or name,
                monitors=tuple(spec.monitor_configs()),
                streaming=matrix.streaming_for(name),
                local_detoxify=spec.local_detoxify,
                notes=notes,
            )
        )
    return scenarios


def gateway_config(
    scenario: Scenario,
    matrix: Matrix,
    *,
    upstream: str,
    host: str,
    port: int,
    work_dir: Path,
    detoxify_files: tuple[Path, Path] | None = None,
    classifier: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The YAML settings of this scenario's gateway (see gateway/settings.py).

    ``detoxify_files`` is the (checkpoint, config dir) of a locally built model; it is
    given to detoxify monitors that name no checkpoint of their own. ``classifier`` is
    the (base URL, model) of the engine serving ``classifier`` monitors that name none.
    """
    if not scenario.has_gateway:
        raise ValueError(f"scenario {scenario.name!r} runs without a gateway")
    config: dict[str, Any] = copy.deepcopy(matrix.gateway)
    monitors = [dict(m) for m in scenario.monitors or ()]
    if scenario.local_detoxify:
        if detoxify_files is None:
            raise ValueError(f"scenario {scenario.name!r} needs a locally built Detoxify model")
        for monitor in monitors:
            if monitor["name"] == "detoxify" and not monitor.get("checkpoint"):
                monitor["checkpoint"] = str(detoxify_files[0])
                monitor["config_path"] = str(detoxify_files[1])
    for monitor in monitors:
        if monitor["name"] == CLASSIFIER and not monitor.get("base_url"):
            if classifier is None:
                raise ValueError(
                    f"scenario {scenario.name!r} needs a classifier engine: pass "
                    "--classifier-url (and --classifier-model)"
                )
            monitor["base_url"], monitor["model"] = classifier[0], monitor.get("model") or classifier[1]
    # The gateway audits by default, to a file in its working directory: give each
    # gateway its own file so they neither share a database nor litter the cwd.
    audit = config.setdefault("audit", {})
    if isinstance(audit, dict) and not audit.get("path"):
        audit["path"] = str(work_dir / f"audit-{scenario.name}.db")
    config.update(
        upstreams=[upstream],
        host=host,
        port=port,
        monitors=monitors,
        streaming=dict(scenario.streaming or {}),
    )
    return config
