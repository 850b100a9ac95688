"""The bench's own servers: the simulator and a gateway per scenario, as child processes.

The load rounds use them in front of the simulator (or of ``--upstream``). The safety pass
runs in front of a simulator of its own in echo mode (``echo_gateways``): the answer is
the prompt itself, so input and output monitors see the labelled text and the catch rates
measure the monitor sets, not a model (with ``--upstream``, the rounds' gateways point at a
real model, whose answers to labelled prompts are not labelled texts), and it answers at
once (the rounds' simulator would spend most of a minute generating the echoes at its
profile's pace). They are started after the rounds, so they cost the rounds nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml
from rich.console import Console

from loadtest.bench.matrix import Matrix
from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.bench.scenarios import Scenario, gateway_config
from loadtest.harness import free_port

LOOPBACK = "127.0.0.1"
# The safety pass's simulator: latency does not change a verdict, so it answers at once.
SAFETY_SIM_PROFILE = "instant"


def simulator(
    port: int,
    *,
    profile: str,
    model: str,
    seed: int,
    log: Path,
    output_mode: str | None = "echo",
    extra: Sequence[str] = (),
) -> ManagedProcess:
    """The built-in simulator on ``port``: in echo mode unless told otherwise (None: the
    simulator's default), with ``extra`` arguments (faults, batch size) after the rest.
    Every bench kit starts its simulator here."""
    base = f"http://{LOOPBACK}:{port}"
    mode = ["--output-mode", output_mode] if output_mode is not None else []
    argv = [sys.executable, "-m", "loadtest.sim", "--host", LOOPBACK, "--port", str(port), "--profile", profile]
    argv += [*mode, "--seed", str(seed), "--model", model, "--log-level", "warning", *extra]
    return ManagedProcess("simulator", argv, log, base + "/health", base)


def gateway(
    scenario: Scenario,
    matrix: Matrix,
    *,
    upstream: str,
    port: int,
    work_dir: Path,
    detoxify_files: tuple[Path, Path] | None,
    classifier: tuple[str, str] | None = None,
    tag: str = "",
) -> ManagedProcess:
    """A gateway with ``scenario``'s monitors in front of ``upstream``; its config and log
    are named after the scenario (and ``tag``). ``classifier``: (URL, model) of the engine
    serving its ``classifier`` monitors."""
    config = gateway_config(
        scenario,
        matrix,
        upstream=upstream,
        host=LOOPBACK,
        port=port,
        work_dir=work_dir,
        detoxify_files=detoxify_files,
        classifier=classifier,
    )
    name = f"{tag}gateway-{scenario.name}"
    config_path = work_dir / "configs" / f"{name}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    base = f"http://{LOOPBACK}:{port}"
    return ManagedProcess(
        f"{tag.rstrip('-') + ' ' if tag else ''}gateway for scenario {scenario.name!r}",
        [sys.executable, "-m", "gateway", "--log-level", "warning", "serve", "--config", str(config_path)],
        work_dir / "logs" / f"{name}.log",
        base + "/ready",
        base,
    )


@contextmanager
def echo_gateways(
    scenarios: list[Scenario],
    matrix: Matrix,
    *,
    model: str,
    seed: int,
    work_dir: Path,
    detoxify_files: dict[str, tuple[Path, Path]],
    ready_timeout_s: float,
    console: Console,
    classifier: tuple[str, str] | None = None,
    sim_classifier_model: str = "sim-guard",
) -> Iterator[dict[str, str]]:
    """An echo simulator serving ``model`` and a gateway per monitor set in front of it,
    for the safety pass; yields the gateways' URLs by scenario; stops them all on exit.
    ``classifier`` monitors call ``classifier`` (URL, model), else the simulator's /classify."""
    sets = [s for s in scenarios if s.is_monitor_set]
    taken: set[int] = set()
    with ProcessGroup() as group:
        sim = group.add(
            simulator(
                free_port(taken=taken),
                profile=SAFETY_SIM_PROFILE,
                model=model,
                seed=seed,
                log=work_dir / "logs" / "safety-simulator.log",
            )
        )
        urls = {}
        for scenario in sets:
            process = group.add(
                gateway(
                    scenario,
                    matrix,
                    upstream=sim.base_url,
                    port=free_port(taken=taken),
                    work_dir=work_dir,
                    detoxify_files=detoxify_files.get(scenario.local_detoxify or ""),
                    classifier=classifier or (sim.base_url, sim_classifier_model),
                    tag="safety-",
                )
            )
            urls[scenario.name] = process.base_url
        with console.status(f"safety pass: starting an echo simulator and {len(sets)} gateway(s)..."):
            group.start_all()
            group.wait_ready(ready_timeout_s)
        yield urls
