"""Runs ``taxgate bench monitors``: build the monitors, warm up, interleaved rounds in process.

Each monitor is built through the monitor registry as the gateway builds it; Detoxify
from the bench's local random-weight model (``localmodel``: scores mean nothing, the
cost is the real model's) unless ``--model-dir`` names real weights. Rounds are
ordered by the bench's ``round_plan``: every variant once per repeat, the start
rotating, so drift in machine load hits every setting alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from loadtest.bench.kit import progress_bar, round_plan
from loadtest.bench.localmodel import CHECKPOINT, CONFIG_DIR, PRESETS, local_detoxify
from loadtest.bench.monitorload import RoundResult, Variant, run_round, split_encodable
from loadtest.bench.options import LevelPlan
from loadtest.datasets import load_dataset
from monitors.base import AsyncMonitor, Monitor
from monitors.config import BatchSpec, MonitorSpec
from monitors.registry import MonitorRegistry

DETOXIFY = "detoxify"


@dataclass(frozen=True)
class MonitorBenchOptions:
    """The settings of one run, built once from the command line."""

    monitors: tuple[str, ...] = (DETOXIFY,)
    model: str = "bert-base"  # the local Detoxify preset
    model_dir: Path | None = None  # a folder with detoxify.ckpt and hf-config/ instead
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 32)
    concurrency: int = 32
    duration_s: float | None = 10.0
    requests: int | None = None
    repeats: int = 3
    max_wait_ms: float = BatchSpec().max_wait_ms
    warmup: int = 2
    torch_threads: int | None = None
    dataset: Path | None = None
    seed: int = 0
    ci_method: str = "t"
    out: Path = Path("taxgate-monitors")
    cache_dir: Path = Path.home() / ".cache" / "taxgate"
    command: str = ""

    def __post_init__(self) -> None:
        if not self.monitors:
            raise ValueError("--monitors must name at least one monitor")
        if not self.batches or min(self.batches) < 1:
            raise ValueError("--batches must be integers >= 1")
        if self.model not in PRESETS:
            raise ValueError(f"--model must be one of {', '.join(PRESETS)}")
        for flag, value in (
            ("--concurrency", self.concurrency),
            ("--repeats", self.repeats),
            ("--requests", 1 if self.requests is None else self.requests),
            ("--duration", 1 if self.duration_s is None else self.duration_s),
        ):
            if value <= 0:
                raise ValueError(f"{flag} must be positive, got {value}")
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("give one of --duration and --requests")
        if self.warmup < 0 or self.max_wait_ms < 0:
            raise ValueError("--warmup and --max-wait-ms must not be negative")
        if self.ci_method not in ("t", "bootstrap"):
            raise ValueError(f"--ci must be t or bootstrap, got {self.ci_method!r}")


@dataclass
class MonitorBenchResult:
    """Everything the report is written from."""

    options: MonitorBenchOptions
    rounds: list[RoundResult]
    started_at: datetime
    wall_s: float
    texts: int
    load_avg_before: tuple[float, float, float]
    load_avg_after: tuple[float, float, float]
    cores_used: float
    model: str = ""
    tokens_mean: float | None = None
    tokens_max: int | None = None
    torch: str | None = None
    torch_threads: int | None = None
    notes: list[str] = field(default_factory=list)


def detoxify_files(options: MonitorBenchOptions, console: Console) -> tuple[Path, Path, str]:
    """``(checkpoint, config_dir, description)`` of the Detoxify model to measure."""
    if options.model_dir is not None:
        checkpoint, config_dir = options.model_dir / CHECKPOINT, options.model_dir / CONFIG_DIR
        if not checkpoint.is_file() or not (config_dir / "config.json").is_file():
            raise ValueError(
                f"--model-dir {options.model_dir} holds no {CHECKPOINT} and "
                f"{CONFIG_DIR}/config.json (as `python -m loadtest.tiny_detoxify DIR` writes)"
            )
        return checkpoint, config_dir, f"from {options.model_dir}"
    console.print(f"[dim]local Detoxify model ({options.model}): building or reusing in {options.cache_dir}[/]")
    checkpoint, config_dir = local_detoxify(options.model, options.cache_dir, options.out / "logs")
    return checkpoint, config_dir, f"local {options.model}, random weights"


def encode(config_dir: Path, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, as the monitor's tokenizer (same folder) produces them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(config_dir))
    return tokenizer(list(texts), truncation=True)["input_ids"]


class MonitorBenchRunner:
    def __init__(
        self, options: MonitorBenchOptions, console: Console | None = None, registry: MonitorRegistry | None = None
    ) -> None:
        self.options = options
        self.console = console or Console(stderr=True)
        self.registry = registry or MonitorRegistry.from_entry_points()

    def run(self) -> MonitorBenchResult:
        options, console = self.options, self.console
        started_at, t0 = datetime.now(UTC), time.monotonic()
        load_before = os.getloadavg()
        texts = [item.text for item in load_dataset(options.dataset)]
        if not texts:
            raise ValueError("the dataset has no texts")
        random.Random(options.seed).shuffle(texts)
        result = MonitorBenchResult(
            options=options,
            rounds=[],
            started_at=started_at,
            wall_s=0.0,
            texts=0,
            load_avg_before=load_before,
            load_avg_after=load_before,
            cores_used=0.0,
        )
        built: dict[str, Monitor] = {}
        token_count = None
        try:
            for name in dict.fromkeys(options.monitors):
                spec = MonitorSpec(name=name)
                if name == DETOXIFY:
                    checkpoint, config_dir, where = detoxify_files(options, console)
                    spec = MonitorSpec(
                        name=name, checkpoint=str(checkpoint), config_path=str(config_dir), device=options.device
                    )
                    token_count, texts = self._tokens(config_dir, texts, result)
                    hf = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
                    result.model = f"{hf['hidden_size']}x{hf['num_hidden_layers']} BERT, {where}"
                monitor = self.registry.build(spec)
                if isinstance(monitor, AsyncMonitor):
                    asyncio.run(monitor.close())
                    raise ValueError(
                        f"monitor {name!r} has an async check: it does its own batching "
                        "over I/O, and this bench measures CPU-bound checks"
                    )
                built[name] = monitor
            self._torch(result)
            variants = [v for name, m in built.items() for v in self._variants(name, m)]
            self._warm_up(built, texts)
            cpu_started, rounds_started = time.process_time(), time.perf_counter()
            result.rounds = asyncio.run(self._rounds(built, variants, texts, token_count))
            result.cores_used = (time.process_time() - cpu_started) / max(time.perf_counter() - rounds_started, 1e-9)
        finally:
            for monitor in built.values():
                monitor.close()
        result.texts = len(texts)
        result.load_avg_after = os.getloadavg()
        result.wall_s = time.monotonic() - t0
        if inline := [n for n, m in built.items() if m.inline]:
            result.notes.append(
                f"{', '.join(inline)}: inline (the gateway calls it on the event loop, "
                "not through the micro-batcher), so --batches does not apply"
            )
        # Only the load before says much: after the run it includes our own threads.
        if load_before[0] > (os.cpu_count() or 1) * 0.5:
            result.notes.append(
                "the load average was already high before the run: another process "
                "was using the CPU, so the numbers are noisy; compare the intervals"
            )
        return result

    def _tokens(self, config_dir: Path, texts: list[str], result: MonitorBenchResult):
        token_count, dropped = split_encodable(
            texts,
            encode(config_dir, texts),
            json.loads((config_dir / "config.json").read_text(encoding="utf-8"))["vocab_size"],
        )
        if dropped:
            result.notes.append(
                f"left out {len(dropped)} of {len(texts)} texts: their token ids are "
                f"past the model's vocab_size (duplicate lines in "
                f"{config_dir / 'vocab.txt'}?)"
            )
        tokens = list(token_count.values())
        result.tokens_mean, result.tokens_max = sum(tokens) / len(tokens), max(tokens)
        return token_count, list(token_count)

    def _torch(self, result: MonitorBenchResult) -> None:
        if DETOXIFY not in self.options.monitors:
            return
        import torch

        if self.options.torch_threads is not None:
            torch.set_num_threads(self.options.torch_threads)
        result.torch, result.torch_threads = torch.__version__, torch.get_num_threads()

    def _variants(self, name: str, monitor: Monitor) -> list[Variant]:
        if monitor.inline:
            return [Variant(name, None)]
        return [Variant(name, size) for size in self.options.batches]

    def _warm_up(self, built: dict[str, Monitor], texts: list[str]) -> None:
        """Untimed calls at every batch size: lazy initialisation and caches are not measured."""
        with self.console.status("warming up the monitors..."):
            for monitor in built.values():
                for size in self.options.batches:
                    for _ in range(self.options.warmup):
                        monitor.check(texts[:size])

    async def _rounds(
        self, built: dict[str, Monitor], variants: list[Variant], texts: list[str], token_count: dict[str, int] | None
    ) -> list[RoundResult]:
        options = self.options
        by_name = {v.name: v for v in variants}
        level = LevelPlan(
            users=options.concurrency,
            repeats=options.repeats,
            requests=options.requests or 0,
            duration_s=1,
            stagger_s=0.0,
        )
        plan = round_plan(list(by_name), (level,))
        results = []
        with progress_bar(self.console) as progress:
            task = progress.add_task("rounds", total=len(plan))
            for repeat, _, name in plan:
                progress.update(task, description=f"repeat {repeat + 1}/{options.repeats}  {name:<22}")
                variant = by_name[name]
                results.append(
                    await run_round(
                        built[variant.monitor].check,
                        texts,
                        variant,
                        concurrency=options.concurrency,
                        duration_s=options.duration_s,
                        requests=options.requests,
                        max_wait_ms=options.max_wait_ms,
                        repeat=repeat,
                        token_count=token_count if variant.monitor == DETOXIFY else None,
                    )
                )
                progress.advance(task)
        return results
