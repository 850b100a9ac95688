"""Runs a bench: start the servers, warm up, interleaved Locust rounds, safety pass, stop.

Order of the measured rounds: for each repeat, for each concurrency level, every
scenario once (direct, gateway, set A, set B, ...). Interleaving spreads slow drifts
of the machine (thermal, other tenants, caches) over all scenarios alike instead of
charging them to whichever ran last; the starting scenario rotates with the repeat
so none is always the first after a level change.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from loadtest.bench import cpu, echo, precision, promscrape
from loadtest.bench.aggregate import CellStats, cell_stats, steady_window
from loadtest.bench.distributed import (
    LoadLost,
    load_generator,
    lost_rounds,
    round_load_cores,
    watch_load,
)
from loadtest.bench.kit import PhaseClock, progress_bar, round_plan
from loadtest.bench.localmodel import local_detoxify
from loadtest.bench.matrix import Matrix, load_matrix
from loadtest.bench.options import BenchOptions, LevelPlan
from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.bench.rounds import RoundSpec, Workload, run_round
from loadtest.bench.safety import (
    SafetyJob,
    SafetyResult,
    safety_items,
    safety_pass,
    stratified_sample,
)
from loadtest.bench.samples import Sample
from loadtest.bench.scenarios import CLASSIFIER, Scenario, build_scenarios
from loadtest.bench.targets import NONE_SETS, TargetReport, TargetRun, target_timings, with_targets
from loadtest.bench.tax import DIRECT
from loadtest.bench.traffic import warm_up
from loadtest.datasets import load_dataset
from loadtest.harness import Server, discover_model, free_port, wait_ready

SIM_MODEL = "sim-llama-8b"
SIM_CLASSIFIER_MODEL = "sim-guard"  # loadtest/sim's /classify model (SimSettings.classifier_model)
RANDOM_WEIGHTS_SAMPLE = 25  # items per label through a random-weight model's set


@dataclass
class BenchResult:
    """Everything the report is written from."""

    options: BenchOptions
    scenarios: list[Scenario]
    cells: dict[tuple[str, int], CellStats]
    safety: dict[str, SafetyResult]
    timings: dict[str, list[promscrape.Timing]]
    model: str
    upstream_kind: str
    started_at: datetime
    wall_s: float
    phases_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # --target endpoints measured (what the bench could not know, their /metrics).
    targets: list[TargetReport] = field(default_factory=list)
    # What the run set out to measure and could not (a target left out, rounds not run).
    missing: list[str] = field(default_factory=list)


class BenchRunner:
    def __init__(self, options: BenchOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(stderr=True)
        # Servers by CPU-sampler name: "upstream", "gateway:<scenario>".
        self._servers: dict[str, ManagedProcess] = {}
        # Per level, the comparisons still too wide before each extra repeat it ran.
        self.extended: dict[int, list[list[str]]] = {}
        # Per level that used every extra repeat, the comparisons still too wide after them.
        self.still_wide: dict[int, list[str]] = {}
        self.targets = TargetRun(options.targets)
        self.missing: list[str] = []

    def run(self) -> BenchResult:
        options = self.options
        started_at, t0 = datetime.now(UTC), time.monotonic()
        matrix = load_matrix(options.matrix)
        set_names, notes = self._sets(matrix)
        scenarios = with_targets(build_scenarios(matrix, set_names), options.targets, options.sets)
        load_prompts = [
            i.text
            for i in (
                options.datasets[0].load(self._labels())
                if options.datasets
                else load_dataset(None, labels=self._labels())
            )
        ]
        if not load_prompts:
            raise ValueError(
                f"the dataset has no items labelled {options.load_labels!r} to send as load (see --load-labels)"
            )
        options.work_dir.mkdir(parents=True, exist_ok=True)
        phases = PhaseClock()
        detoxify_files = self._local_models(scenarios)
        phases.lap("local models")
        with ProcessGroup() as group, cpu.CpuSampler() as sampler:
            urls = self._start(group, scenarios, matrix, detoxify_files)
            for name, process in self._servers.items():
                if process.proc is not None:
                    sampler.watch(name, process.proc.pid)
            model = options.model or discover_model(urls[DIRECT])
            scenarios = self._probe_targets(scenarios, urls, model)
            phases.lap("start servers")
            self._warm_up(urls, model, load_prompts)
            phases.lap("warm-up")
            gateways = {name: url for name, url in urls.items() if name != DIRECT and name not in self.targets.names}
            before = self._scrape(gateways)
            self.targets.read(after=False)
            samples, cpu_use = self._rounds(scenarios, urls, model, group, sampler)
            timings = self._timings(before, self._scrape(gateways))
            self.targets.read(after=True)
            timings.update(target_timings(self.targets))
            phases.lap("rounds")
            notes += self._extension_notes()
            safety = self._safety_pass(scenarios, matrix, urls, model, detoxify_files) if options.safety else {}
            phases.lap("safety pass")
        if not options.safety:
            notes.append("safety pass skipped (--no-safety)")
        if options.upstream:
            notes.append("--upstream: the upstream's CPU is not sampled (not our process)")
        notes += [
            f"{s.name}: classifier served by the simulator's /classify (a word rule standing "
            "in for a guard model on a GPU): latency only, catch rates meaningless"
            for s in scenarios
            if self._simulated_classifier(s)
        ]
        notes.append(options.load_layout.describe())
        cells = {key: cell_stats(key[0], key[1], rounds, cpu_use[key]) for key, rounds in samples.items()}
        return BenchResult(
            options=options,
            scenarios=scenarios,
            cells=cells,
            safety=safety,
            timings=timings,
            model=model,
            upstream_kind=self._upstream_kind(),
            started_at=started_at,
            wall_s=time.monotonic() - t0,
            phases_s=phases.laps,
            notes=notes,
            targets=self.targets.reports(),
            missing=self.missing,
        )

    def _probe_targets(self, scenarios: list[Scenario], urls: dict[str, str], model: str) -> list[Scenario]:
        """The scenarios without the targets that cannot be measured (each said why)."""
        if not self.targets.targets:
            return scenarios
        with self.console.status(f"probing {len(self.targets.targets)} --target endpoint(s)..."):
            problems = self.targets.probe(model, self.options.route)
        for problem in problems.values():
            self.console.print(f"[yellow]{problem}: left out of the run[/]")
            self.missing.append(problem)
        urls.update(self.targets.urls())
        return [s for s in scenarios if s.name not in problems]

    def _labels(self) -> list[str] | None:
        labels = self.options.load_labels
        return None if labels in ("", "all") else labels.split(",")

    def _upstream_kind(self) -> str:
        if self.options.upstream:
            return f"external ({self.options.upstream})"
        return f"simulator (profile {self.options.sim_profile}, echo mode)"

    def _local_models(self, scenarios: list[Scenario]) -> dict[str, tuple[Path, Path]]:
        presets = {s.local_detoxify for s in scenarios if s.local_detoxify}
        files = {}
        for preset in sorted(presets):
            self.console.print(
                f"[dim]local Detoxify model ({preset}): building or reusing in {self.options.cache_dir}[/]"
            )
            files[preset] = local_detoxify(preset, self.options.cache_dir, self.options.work_dir / "logs")
        return files

    def _start(
        self,
        group: ProcessGroup,
        scenarios: list[Scenario],
        matrix: Matrix,
        detoxify_files: dict[str, tuple[Path, Path]],
    ) -> dict[str, str]:
        """Start the simulator (unless --upstream) and one gateway per gateway scenario."""
        options, work = self.options, self.options.work_dir
        taken: set[int] = set()
        if options.upstream:
            upstream = options.upstream.rstrip("/").removesuffix("/v1")
        else:
            self._servers[cpu.UPSTREAM] = sim = group.add(
                echo.simulator(
                    free_port(taken=taken),
                    profile=options.sim_profile,
                    model=options.model or SIM_MODEL,
                    seed=options.seed,
                    log=work / "logs" / "simulator.log",
                )
            )
            upstream = sim.base_url
        urls = {DIRECT: upstream}
        for scenario in scenarios:
            if not scenario.has_gateway:
                continue
            process = group.add(
                echo.gateway(
                    scenario,
                    matrix,
                    upstream=upstream,
                    port=free_port(taken=taken),
                    work_dir=work,
                    detoxify_files=detoxify_files.get(scenario.local_detoxify or ""),
                    classifier=self._classifier(upstream),
                )
            )
            self._servers[f"{cpu.GATEWAY}:{scenario.name}"] = process
            urls[scenario.name] = process.base_url
        with self.console.status(f"starting {len(group.processes)} server(s)..."):
            group.start_all()
            if options.upstream:
                # Not our process: only its URL can be watched. /v1/models, not /health: a
                # proxy in front of vLLM may not forward /health.
                wait_ready(
                    Server(f"the upstream {upstream}", upstream + "/v1/models"), options.ready_timeout_s, poll_s=1.0
                )
            group.wait_ready(options.ready_timeout_s)
        return urls

    def _sets(self, matrix: Matrix) -> tuple[list[str], list[str]]:
        """The sets to run, and notes on those left out: with --upstream there is no simulator
        to serve /classify, so a classifier set needs --classifier-url."""
        options = self.options
        names = [] if NONE_SETS in (options.sets or ()) else matrix.select(list(options.sets or ()))
        if not options.upstream or options.classifier_url:
            return names, []
        served = [
            name
            for name in names
            if any(m["name"] == CLASSIFIER and not m.get("base_url") for m in matrix.sets[name].monitor_configs())
        ]
        if served and options.sets:
            raise ValueError(
                f"set(s) {', '.join(served)} call a classifier engine, and with --upstream "
                "there is no simulator to serve one: pass --classifier-url URL (and "
                "--classifier-model NAME), or leave them out of --sets"
            )
        notes = [
            f"{name}: skipped (with --upstream its classifier engine must be named: --classifier-url)"
            for name in served
        ]
        return [name for name in names if name not in served], notes

    def _simulated_classifier(self, scenario: Scenario) -> bool:
        """Whether the set's classifier monitors are served by the simulator's /classify."""
        return not self.options.classifier_url and any(
            m["name"] == CLASSIFIER and not m.get("base_url") for m in scenario.monitors or ()
        )

    def _classifier(self, upstream: str) -> tuple[str, str] | None:
        """(URL, model) of the engine for ``classifier`` monitors: --classifier-url, else the
        simulator (which serves /classify); an external upstream has no /classify to assume."""
        options = self.options
        if options.classifier_url:
            return options.classifier_url, options.classifier_model or SIM_CLASSIFIER_MODEL
        if options.upstream:
            return None
        return upstream, options.classifier_model or SIM_CLASSIFIER_MODEL

    def _warm_up(self, urls: dict[str, str], model: str, prompts: list[str]) -> None:
        options = self.options
        with self.console.status(f"warming up every scenario for {options.warmup_s:g} s..."):
            failures = asyncio.run(
                warm_up(
                    list(urls.values()),
                    model,
                    prompts,
                    options.max_tokens,
                    options.warmup_s,
                    seed=options.seed,
                    route=options.route,
                    auth=self.targets.auth(),
                )
            )
        for name, url in urls.items():
            if failures[url]:
                self.console.print(
                    f"[yellow]warm-up: {failures[url]} failed request(s) to "
                    f"{name} ({url}); its rounds will show the errors[/]"
                )

    def _rounds(
        self, scenarios: list[Scenario], urls: dict[str, str], model: str, group: ProcessGroup, sampler: cpu.CpuSampler
    ):
        """Every round of the plan; returns samples and CPU (cores per part) per cell and round."""
        options = self.options
        workload = Workload(
            model=model,
            max_tokens=options.max_tokens,
            labels=options.load_labels,
            dataset=options.dataset,
            seed=options.seed,
            route=options.route,
        )
        plan = round_plan([s.name for s in scenarios], options.plans)
        samples: dict[tuple[str, int], list[list[Sample]]] = {}
        cpu_use: dict[tuple[str, int], list[dict[str, float | None]]] = {}
        generator = load_generator(
            options.load_layout, options.work_dir / "logs" / "locust.log", options.ready_timeout_s
        )
        names = [s.name for s in scenarios]
        keys = self.targets.keys()
        with generator, progress_bar(self.console) as progress:
            watch_load(generator, sampler)
            task = progress.add_task("rounds", total=len(plan))

            def measure(repeat: int, level: LevelPlan, name: str, of: str) -> None:
                progress.update(task, description=(f"repeat {repeat + 1}/{of}  {level.users:>3} users  {name:<14}"))
                group.check_alive()  # a dead gateway would otherwise read as a slow one
                spec = RoundSpec(
                    name,
                    level.users,
                    repeat,
                    urls[name],
                    level.duration_s,
                    requests=level.requests,
                    stagger_s=level.stagger_s,
                    api_key=keys.get(name, ""),
                )
                got = run_round(spec, workload, options.work_dir, generator)
                samples.setdefault((name, level.users), []).append(got)
                cores = self._round_cpu(sampler, name, got)
                cpu_use.setdefault((name, level.users), []).append(
                    {**cores, **round_load_cores(generator, sampler, got)}
                )
                progress.advance(task)

            try:
                for repeat, level, name in plan:
                    measure(repeat, level, name, str(level.repeats))
                for level in options.plans:
                    self._extra_repeats(
                        level,
                        names,
                        samples,
                        cpu_use,
                        measure,
                        grow=lambda n: progress.update(task, total=progress.tasks[task].total + n),
                    )
            except LoadLost as exc:
                self.missing += lost_rounds(exc, plan, samples)
                self.console.print(f"[red]{self.missing[-1]}[/]")
        return samples, cpu_use

    def _extra_repeats(self, level: LevelPlan, names: list[str], samples, cpu_use, measure, grow) -> None:
        """Up to ``level.extra`` more repeats, each of the baselines and the sets whose
        comparison is still too wide (``precision``); what stays wide after all of them is
        kept for the report's notes."""
        for extra in range(level.extra + 1 if level.extra else 0):
            cells = {
                key: cell_stats(key[0], key[1], rounds, cpu_use[key])
                for key, rounds in samples.items()
                if key[1] == level.users
            }
            wide = precision.unresolved(
                cells, names, level.users, self._target(), self.options.ci_method, self.targets.names
            )
            run = precision.extra_repeat(names, wide)
            pairs = [f"{name} vs {baseline}" for name, baseline in wide]
            if not run:
                return
            if extra == level.extra:  # every extra repeat ran: say what stayed wide
                self.still_wide[level.users] = pairs
                return
            self.extended.setdefault(level.users, []).append(pairs)
            grow(len(run))
            repeat = level.repeats + extra
            shift = repeat % len(run)  # rotate the order, as the plan does
            for name in run[shift:] + run[:shift]:
                measure(repeat, level, name, f"{level.repeats}+{extra + 1}")

    def _target(self) -> precision.Precision:
        return precision.Precision(half_width_ms=self.options.target_ms, relative=self.options.target_relative)

    def _extension_notes(self) -> list[str]:
        target = self._target()
        notes = []
        for users, wide in sorted(self.extended.items()):
            level = next(plan for plan in self.options.plans if plan.users == users)
            at = f"{users} user{'s' if users != 1 else ''}"
            first = ", ".join(wide[0])
            notes.append(
                f"{at}: {len(wide)} extra repeat(s) of the baselines and the "
                f"sets still too wide (TTFT/E2E p50 tax interval over "
                f"±{target.half_width_ms:g} ms and {target.relative:.0%} of the tax, or "
                f"tok/s ratio over ±{target.ratio_half_width:g}): first {first}"
            )
            if users in self.still_wide:
                notes.append(
                    f"{at}: after all {level.extra} extra repeats still too wide: {', '.join(self.still_wide[users])}"
                )
        return notes

    @staticmethod
    def _round_cpu(sampler: cpu.CpuSampler, scenario: str, samples: list[Sample]) -> dict[str, float | None]:
        """Mean cores of each part over the round's steady window."""
        sampler.sample()  # a point after the window's end even for the shortest rounds
        begin, end, _ = steady_window(samples)
        parts = {cpu.LOAD_GENERATOR: cpu.LOAD_GENERATOR, cpu.UPSTREAM: cpu.UPSTREAM, cpu.MACHINE: cpu.MACHINE}
        if scenario != DIRECT:
            parts[cpu.GATEWAY] = f"{cpu.GATEWAY}:{scenario}"
        cores = {part: cpu.cores_between(sampler.series(name), begin, end) for part, name in parts.items()}
        ours = [cpu.cores_between(sampler.series(name), begin, end) for name in sampler.names()]
        cores[cpu.BENCH] = sum(c for c in ours if c is not None)
        return cores

    def _scrape(self, gateways: dict[str, str]) -> dict[str, dict]:
        with httpx.Client(timeout=10.0) as client:
            return {name: promscrape.scrape(client, url) for name, url in gateways.items()}

    @staticmethod
    def _timings(before: dict[str, dict], after: dict[str, dict]) -> dict[str, list]:
        return {name: promscrape.timings_between(before[name], after[name]) for name in after}

    def _safety_pass(
        self,
        scenarios: list[Scenario],
        matrix: Matrix,
        urls: dict[str, str],
        model: str,
        detoxify_files: dict[str, tuple[Path, Path]],
    ) -> dict[str, SafetyResult]:
        """The safety pass in front of an echo simulator started for it (``echo``), so it
        measures the monitor sets, not the model; it answers at once, so the pass takes
        the monitors' time, not a simulated model's (the rounds' simulator would spend
        most of a minute generating the echoes at its profile's pace)."""
        if not any(s.is_monitor_set for s in scenarios):
            return self._safety(scenarios, urls, model)
        options = self.options
        engine = (
            (options.classifier_url, options.classifier_model or SIM_CLASSIFIER_MODEL)
            if options.classifier_url
            else None
        )
        with echo.echo_gateways(
            scenarios,
            matrix,
            model=model,
            seed=self.options.seed,
            work_dir=self.options.work_dir,
            detoxify_files=detoxify_files,
            classifier=engine,
            sim_classifier_model=SIM_CLASSIFIER_MODEL,
            ready_timeout_s=self.options.ready_timeout_s,
            console=self.console,
        ) as echoes:
            return self._safety(scenarios, echoes, model)

    def _safety(self, scenarios: list[Scenario], urls: dict[str, str], model: str) -> dict[str, SafetyResult]:
        options = self.options
        items = safety_items(options.datasets)
        jobs = []
        for scenario in scenarios:
            if not scenario.is_monitor_set:
                continue
            per_label = options.safety_sample or None
            if scenario.local_detoxify or self._simulated_classifier(scenario):
                # Random weights (or the simulator's word rule standing in for a guard model)
                # make its catch rates meaningless; a sample shows the plumbing works
                # without spending the run's longest minute on noise.
                per_label = min(per_label or RANDOM_WEIGHTS_SAMPLE, RANDOM_WEIGHTS_SAMPLE)
            chosen, note = items, ""
            if per_label is not None:
                chosen = stratified_sample(items, per_label, random.Random(options.seed))
                note = f"stratified sample of up to {per_label} items per label"
            jobs.append(SafetyJob(scenario.name, urls[scenario.name], chosen, note))
        if not jobs:
            return {}
        with self.console.status(f"safety pass: {len(items)} items through {len(jobs)} monitor set(s)..."):
            return asyncio.run(
                safety_pass(
                    jobs,
                    model,
                    max_tokens=options.safety_max_tokens,
                    concurrency=options.safety_concurrency,
                    stream=options.safety_stream,
                    route=options.route,
                )
            )
