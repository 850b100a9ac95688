"""Batched vs unbatched throughput of the Detoxify monitor under concurrent requests.

    python -m loadtest.monitor_bench --duration 20 --repeats 2 --json out.json

Measures what micro-batching buys a BERT-sized monitor. C asyncio "requests"
each submit one dataset text at a time through a ``MicroBatcher`` in front of the
real ``detoxify`` monitor, built through the monitor registry as the gateway builds
it. There is one round per ``max_batch`` setting and repeat; repeats run the settings
in alternating order (1,32 then 32,1) so drift in machine load hits every setting
alike. The weights are random (``loadtest.tiny_detoxify``): scores mean nothing, the
cost is the real model's.

Throughput is texts completed / (last completion - round start); latency is one
text's submit-to-verdict time (queue wait included); the mean batch size comes from
the batcher's own ``taxgate_monitor_batch_size`` histogram, on a fresh registry per
round. "texts/CPU-s" divides by this process's CPU time instead of wall time, which
other processes on a shared machine disturb less. "pad %" is the share of the tokens the model
computed that were padding:
Detoxify pads a batch to its longest text, so on a CPU batching trades per-call
overhead for wasted FLOPs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from rich import box
from rich.console import Console
from rich.table import Table

from loadtest.bench.localmodel import CHECKPOINT, COMPLETE, CONFIG_DIR
from loadtest.bench.stats import percentile
from loadtest.datasets import load_dataset
from loadtest.tiny_detoxify import BERT_BASE, TINY, BertShape
from monitors.base import Finding, Monitor
from monitors.batcher import MicroBatcher
from monitors.config import BatchSpec, MonitorSpec
from monitors.metrics import MonitorMetrics

MONITOR = "detoxify"
SIZES: dict[str, BertShape] = {"tiny": TINY, "bert-base": BERT_BASE}
DEFAULT_SIZE = "bert-base"
# The bench's own cache (loadtest.bench.localmodel) uses the same folders and marker,
# so a model built by either is reused by the other.
DEFAULT_CACHE = Path.home() / ".cache" / "taxgate"

CheckFn = Callable[[list[str]], list[Finding]]


# --- settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    model_size: str | None  # None: whatever --model-dir holds (bert-base when building)
    model_dir: Path
    batches: tuple[int, ...]
    concurrency: int
    duration_s: float | None
    requests: int | None
    repeats: int
    max_wait_ms: float
    warmup: int
    torch_threads: int | None
    dataset: Path | None
    seed: int
    json_path: Path | None


# --- pure parts -------------------------------------------------------------------


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``: sorted, unique, each >= 1."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return tuple(values)


def round_plan(batches: Sequence[int], repeats: int) -> list[tuple[int, int]]:
    """``(repeat, max_batch)`` in run order; odd repeats go in reverse (ABBA against drift)."""
    plan = []
    for repeat in range(repeats):
        order = batches if repeat % 2 == 0 else list(reversed(batches))
        plan.extend((repeat, b) for b in order)
    return plan


@dataclass(frozen=True)
class RoundResult:
    max_batch: int
    repeat: int
    latencies_s: tuple[float, ...]
    wall_s: float
    batches: int  # calls of the model
    batched_texts: int  # texts in those calls (the histogram's sum)
    tokens: int = 0  # tokens of the texts scored
    padded_tokens: int = 0  # tokens the model computed: each batch is padded to its longest text
    cpu_s: float = 0.0  # this process's CPU time: below cores x wall_s when others took the CPU

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def texts(self) -> int:
        return len(self.latencies_s)

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Row:
    """One ``max_batch`` setting over all its repeats."""

    max_batch: int
    rounds: int
    texts: int
    texts_per_s: float  # pooled: all texts / all wall time
    round_texts_per_s: tuple[float, ...]  # by repeat
    texts_per_cpu_s: float  # texts per CPU-second of this process: less sensitive to CPU theft
    p50_ms: float
    p99_ms: float
    mean_batch: float | None
    padding: float | None  # share of the computed tokens that were padding
    speedup: float  # pooled throughput / the baseline's
    round_speedups: tuple[float, ...]  # paired by repeat: same repeat, seconds apart


def mean_batch(batched_texts: float, batches: float) -> float | None:
    return batched_texts / batches if batches else None


def padding_share(tokens: int, padded_tokens: int) -> float | None:
    return 1 - tokens / padded_tokens if padded_tokens else None


def padded(lengths: Sequence[int]) -> int:
    """Tokens one batch costs: every text padded to the longest (Detoxify pads with padding=True)."""
    return len(lengths) * max(lengths, default=0)


def split_encodable(texts: Sequence[str], encoded: Sequence[Sequence[int]],
                    vocab_size: int) -> tuple[dict[str, int], list[str]]:
    """``({text: tokens} of the texts the model can embed, [texts it cannot])``.

    A vocab.txt with duplicate lines gives ids past the embedding table, and such a
    text fails the whole batch it lands in; a benchmark must not stop on it.
    """
    usable: dict[str, int] = {}
    dropped = []
    for text, ids in zip(texts, encoded, strict=True):
        if max(ids, default=0) < vocab_size:
            usable[text] = len(ids)
        else:
            dropped.append(text)
    return usable, dropped


def speedup(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.nan


def summarize(results: Sequence[RoundResult]) -> list[Row]:
    """One row per max_batch, ascending; the smallest max_batch is the speed-up baseline."""
    if not results:
        return []
    groups: dict[int, list[RoundResult]] = {}
    for result in sorted(results, key=lambda r: (r.max_batch, r.repeat)):
        groups.setdefault(result.max_batch, []).append(result)
    base_rounds = groups[min(groups)]
    base_rate = _pooled_rate(base_rounds)
    base_by_repeat = {r.repeat: r.texts_per_s for r in base_rounds}
    rows = []
    for size, rounds in groups.items():
        latencies = [x for r in rounds for x in r.latencies_s]
        rate = _pooled_rate(rounds)
        rows.append(Row(
            max_batch=size,
            rounds=len(rounds),
            texts=len(latencies),
            texts_per_s=rate,
            round_texts_per_s=tuple(r.texts_per_s for r in rounds),
            texts_per_cpu_s=_per_cpu_s(rounds),
            p50_ms=percentile(latencies, 50) * 1000 if latencies else math.nan,
            p99_ms=percentile(latencies, 99) * 1000 if latencies else math.nan,
            mean_batch=mean_batch(sum(r.batched_texts for r in rounds), sum(r.batches for r in rounds)),
            padding=padding_share(sum(r.tokens for r in rounds), sum(r.padded_tokens for r in rounds)),
            speedup=speedup(rate, base_rate),
            round_speedups=tuple(
                speedup(r.texts_per_s, base_by_repeat[r.repeat]) for r in rounds if r.repeat in base_by_repeat
            ),
        ))
    return rows


def _per_cpu_s(rounds: Sequence[RoundResult]) -> float:
    cpu = sum(r.cpu_s for r in rounds)
    return sum(r.texts for r in rounds) / cpu if cpu > 0 else math.nan


def _pooled_rate(rounds: Sequence[RoundResult]) -> float:
    wall = sum(r.wall_s for r in rounds)
    return sum(r.texts for r in rounds) / wall if wall > 0 else 0.0


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _with_span(value: str, values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """``"12.3 (11.9..12.8)"``: the pooled value and the spread of the per-repeat values."""
    if len(values) < 2:
        return value
    return f"{value} ({fmt(min(values))}..{fmt(max(values))})"


def rows_table(rows: Sequence[Row], *, title: str, caption: str) -> Table:
    cells = [
        (
            str(row.max_batch),
            _with_span(_rate(row.texts_per_s), row.round_texts_per_s, _rate), _rate(row.texts_per_cpu_s),
            f"{row.p50_ms:.0f}", f"{row.p99_ms:.0f}",
            "-" if row.mean_batch is None else f"{row.mean_batch:.1f}",
            "-" if row.padding is None else f"{row.padding * 100:.0f}",
            _with_span(f"{_ratio(row.speedup)}x", row.round_speedups, _ratio),
        )
        for row in rows
    ]
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    # Two-line headers keep the table within 80 columns without squeezing the numbers.
    for header in ("max\nbatch", "texts/s\n(by repeat)", "texts/\nCPU-s", "p50\nms", "p99\nms",
                   "mean\nbatch", "pad\n%", "speed-up\n(by repeat)"):
        table.add_column(header, justify="right")
    for row_cells in cells:
        table.add_row(*row_cells)
    return table


# --- the load ---------------------------------------------------------------------


async def run_round(
    check: CheckFn,
    texts: Sequence[str],
    spec: BatchSpec,
    *,
    concurrency: int,
    duration_s: float | None,
    requests: int | None,
    repeat: int = 0,
    token_count: Mapping[str, int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> RoundResult:
    """Closed loop: ``concurrency`` users, each submitting its next text as soon as the last is scored.

    Stops issuing after ``duration_s`` or once ``requests`` texts were issued; texts
    already in flight are waited for and counted. With ``token_count`` (text -> tokens)
    the tokens scored and the padded tokens computed are tallied too.
    """
    tally = [0, 0]

    def counted(batch: list[str]) -> list[Finding]:
        if token_count is not None:
            lengths = [token_count[text] for text in batch]
            tally[0] += sum(lengths)
            tally[1] += padded(lengths)
        return check(batch)

    registry = CollectorRegistry()
    batcher = MicroBatcher(counted, spec, name=MONITOR, metrics=MonitorMetrics(registry), clock=clock)
    issued = itertools.count()
    latencies: list[float] = []
    cpu_start, start = cpu_clock(), clock()
    deadline = start + duration_s if duration_s is not None else math.inf
    last_done = start

    async def user() -> None:
        nonlocal last_done
        while True:
            i = next(issued)
            if (requests is not None and i >= requests) or clock() >= deadline:
                return
            sent = clock()
            await batcher.submit([texts[i % len(texts)]])
            last_done = clock()
            latencies.append(last_done - sent)

    await batcher.start()
    try:
        await asyncio.gather(*(user() for _ in range(concurrency)))
    finally:
        await batcher.close()
    labels = {"monitor": MONITOR}
    return RoundResult(
        max_batch=spec.max_batch,
        repeat=repeat,
        latencies_s=tuple(latencies),
        wall_s=last_done - start,
        batches=int(registry.get_sample_value("taxgate_monitor_batch_size_count", labels) or 0),
        batched_texts=int(registry.get_sample_value("taxgate_monitor_batch_size_sum", labels) or 0),
        tokens=tally[0],
        padded_tokens=tally[1],
        cpu_s=cpu_clock() - cpu_start,
    )


async def run_rounds(check: CheckFn, texts: Sequence[str], token_count: Mapping[str, int],
                     settings: BenchSettings, console: Console) -> list[RoundResult]:
    plan = round_plan(settings.batches, settings.repeats)
    results = []
    for n, (repeat, size) in enumerate(plan, start=1):
        spec = BatchSpec(max_batch=size, max_wait_ms=settings.max_wait_ms,
                         max_queue=max(1024, settings.concurrency))
        result = await run_round(check, texts, spec, concurrency=settings.concurrency,
                                 duration_s=settings.duration_s, requests=settings.requests,
                                 repeat=repeat, token_count=token_count)
        console.print(f"round {n}/{len(plan)} max_batch={size} repeat={repeat + 1}: "
                      f"{result.texts} texts / {result.wall_s:.1f} s = {_rate(result.texts_per_s)}/s, "
                      f"mean batch {mean_batch(result.batched_texts, result.batches) or 0:.1f}, "
                      f"padding {(padding_share(result.tokens, result.padded_tokens) or 0) * 100:.0f}%, "
                      f"{result.cores_used:.2f} cores used")
        results.append(result)
    return results


# --- the model --------------------------------------------------------------------


def ensure_model(settings: BenchSettings) -> tuple[Path, Path, dict]:
    """``(checkpoint, config_dir, hf_config)``: reused from ``model_dir`` or built there."""
    checkpoint, config_dir = settings.model_dir / CHECKPOINT, settings.model_dir / CONFIG_DIR
    config_file = config_dir / "config.json"
    # No COMPLETE marker but both files: a folder from `python -m loadtest.tiny_detoxify OUT`.
    reusable = (settings.model_dir / COMPLETE).is_file() or (checkpoint.is_file() and config_file.is_file())
    if not reusable:
        from loadtest.tiny_detoxify import build_detoxify_checkpoint

        shape = SIZES[settings.model_size or DEFAULT_SIZE]
        build_detoxify_checkpoint(settings.model_dir, seed=settings.seed, **asdict(shape))
        (settings.model_dir / COMPLETE).write_text("built by loadtest.monitor_bench\n", encoding="utf-8")
    hf_config = json.loads(config_file.read_text(encoding="utf-8"))
    if settings.model_size is not None:
        want = SIZES[settings.model_size]
        have = (hf_config.get("hidden_size"), hf_config.get("num_hidden_layers"))
        if have != (want.hidden_size, want.layers):
            raise SystemExit(f"{settings.model_dir} holds a {have[0]}-wide {have[1]}-layer model, "
                             f"not {settings.model_size}; pick another --model-dir")
    return checkpoint, config_dir, hf_config


def build_monitor(checkpoint: Path, config_dir: Path) -> Monitor:
    from monitors.registry import MonitorRegistry

    spec = MonitorSpec(name=MONITOR, checkpoint=str(checkpoint), config_path=str(config_dir), device="cpu")
    return MonitorRegistry.from_entry_points().build(spec)


def encode(config_dir: Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, as the monitor's tokenizer (same folder) produces them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(config_dir))
    return tokenizer(list(texts), truncation=True)["input_ids"]


# --- the command ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.monitor_bench",
        description="Throughput and latency of the Detoxify monitor behind the micro-batcher, "
                    "at several max_batch settings, under C concurrent single-text requests. "
                    "Uses a random-weight checkpoint of the real shape (no download).",
    )
    parser.add_argument("--model-size", choices=sorted(SIZES), default=None,
                        help=f"model shape: bert-base (768 wide, 12 layers: the real cost) or tiny "
                             f"(a smoke test in seconds). Default: whatever --model-dir holds, "
                             f"{DEFAULT_SIZE} when it must be built")
    parser.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                        help="folder with detoxify.ckpt and hf-config/ (as written by "
                             "`python -m loadtest.tiny_detoxify DIR`): reused when present, built "
                             f"there otherwise. Default: {DEFAULT_CACHE}/detoxify-<size>, shared "
                             "with the bench's model cache")
    parser.add_argument("--batches", type=parse_batches, default=(1, 32), metavar="N,N,...",
                        help="max_batch settings to compare; the smallest is the speed-up baseline "
                             "(default 1,32)")
    parser.add_argument("--concurrency", type=int, default=32, metavar="C",
                        help="concurrent requests, each with one text in flight (default 32)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, default=None, metavar="S",
                      help="seconds each round issues requests; in-flight ones are still counted "
                           "(default 10 unless --requests)")
    stop.add_argument("--requests", type=int, default=None, metavar="N",
                      help="texts per round instead of a duration")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds per max_batch, interleaved in alternating order (default 2)")
    parser.add_argument("--max-wait-ms", type=float, default=BatchSpec().max_wait_ms, metavar="MS",
                        help="how long the batcher waits to fill a batch (BatchSpec.max_wait_ms, "
                             "default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N",
                        help="untimed model calls per batch size before the rounds (default 2)")
    parser.add_argument("--torch-threads", type=int, default=None, metavar="N",
                        help="torch intra-op threads (default: torch's own, usually the core count)")
    parser.add_argument("--dataset", type=Path, default=None, metavar="PATH",
                        help="JSONL file or folder of texts (default: the bundled datasets)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the text order and of a model built here (default 0)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the rows, the rounds and the run's conditions as JSON")
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    duration = args.duration if args.duration is not None or args.requests is not None else 10.0
    for name, value in (("--concurrency", args.concurrency), ("--repeats", args.repeats),
                        ("--requests", args.requests or 1), ("--duration", duration or 1)):
        if value <= 0:
            raise SystemExit(f"{name} must be positive")
    model_dir = args.model_dir or DEFAULT_CACHE / f"detoxify-{args.model_size or DEFAULT_SIZE}"
    return BenchSettings(
        model_size=args.model_size, model_dir=model_dir.resolve(), batches=args.batches,
        concurrency=args.concurrency, duration_s=duration, requests=args.requests,
        repeats=args.repeats, max_wait_ms=args.max_wait_ms, warmup=args.warmup,
        torch_threads=args.torch_threads, dataset=args.dataset, seed=args.seed, json_path=args.json,
    )


@dataclass(frozen=True)
class Conditions:
    """What the numbers depend on besides the settings; printed and saved with them."""

    model: str
    texts: int
    tokens_mean: float
    tokens_max: int
    cpu_count: int
    torch: str
    torch_threads: int
    load_avg_before: tuple[float, float, float]
    load_avg_after: tuple[float, float, float]
    cores_used: float  # our process's CPU seconds per wall second during the rounds
    wall_s: float


def caption(settings: BenchSettings, c: Conditions) -> str:
    per_round = f"{settings.duration_s:g} s" if settings.requests is None else f"{settings.requests} texts"
    return (
        f"{c.model} ({settings.model_dir}); {settings.concurrency} concurrent single-text requests, "
        f"{per_round} per round, max_wait {settings.max_wait_ms:g} ms; {c.texts} texts, "
        f"{c.tokens_mean:.0f} tokens mean ({c.tokens_max} max), padded to the longest in a batch; "
        f"{c.cpu_count} cores, torch {c.torch} with {c.torch_threads} threads; this process used "
        f"{c.cores_used:.2f} cores during the rounds; load avg 1 min {c.load_avg_before[0]:.2f} "
        f"before, {c.load_avg_after[0]:.2f} after"
    )


def json_payload(settings: BenchSettings, conditions: Conditions, rows: Sequence[Row],
                 results: Sequence[RoundResult]) -> dict:
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "conditions": asdict(conditions),
        "rows": [asdict(row) for row in rows],
        "rounds": [
            {"max_batch": r.max_batch, "repeat": r.repeat, "texts": r.texts, "wall_s": r.wall_s,
             "texts_per_s": r.texts_per_s, "batches": r.batches,
             "mean_batch": mean_batch(r.batched_texts, r.batches), "tokens": r.tokens,
             "padded_tokens": r.padded_tokens, "padding": padding_share(r.tokens, r.padded_tokens),
             "cores_used": r.cores_used,
             "p50_ms": percentile(r.latencies_s, 50) * 1000 if r.texts else None,
             "p99_ms": percentile(r.latencies_s, 99) * 1000 if r.texts else None}
            for r in results
        ],
    }


def run(settings: BenchSettings, console: Console) -> list[Row]:
    import torch

    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    checkpoint, config_dir, hf_config = ensure_model(settings)
    monitor = build_monitor(checkpoint, config_dir)
    texts = [item.text for item in load_dataset(settings.dataset)]
    random.Random(settings.seed).shuffle(texts)
    token_count, dropped = split_encodable(texts, encode(config_dir, texts), hf_config["vocab_size"])
    if dropped:
        console.print(f"[yellow]left out {len(dropped)} of {len(texts)} texts: their token ids are "
                      f"past the model's vocab_size {hf_config['vocab_size']} (duplicate lines in "
                      f"{config_dir / 'vocab.txt'}?), e.g. {dropped[0]!r}[/]")
    texts = list(token_count)
    tokens = list(token_count.values())
    for size in settings.batches:
        for _ in range(settings.warmup):
            monitor.check(texts[:size])
    rounds_started, cpu_started = time.perf_counter(), time.process_time()
    try:
        results = asyncio.run(run_rounds(monitor.check, texts, token_count, settings, console))
    finally:
        monitor.close()
    cores_used = (time.process_time() - cpu_started) / (time.perf_counter() - rounds_started)
    conditions = Conditions(
        model=f"{hf_config['hidden_size']}x{hf_config['num_hidden_layers']} BERT, random weights",
        texts=len(texts), tokens_mean=sum(tokens) / len(tokens), tokens_max=max(tokens),
        cpu_count=os.cpu_count() or 1, torch=torch.__version__, torch_threads=torch.get_num_threads(),
        load_avg_before=load_before, load_avg_after=os.getloadavg(), cores_used=cores_used,
        wall_s=time.perf_counter() - started,
    )
    rows = summarize(results)
    title = f"Detoxify monitor: micro-batched vs unbatched ({settings.repeats} repeats each)"
    console.print(rows_table(rows, title=title, caption=caption(settings, conditions)))
    # Only the load before says much: after the run it includes our own torch threads.
    if load_before[0] > conditions.cpu_count * 0.5:
        console.print("[yellow]the load average was already high before the run: another process "
                      "was using the CPU, so the numbers are noisy; compare the by-repeat spreads[/]")
    if settings.json_path is not None:
        settings.json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = json_payload(settings, conditions, rows, results)
        settings.json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"json: {settings.json_path}")
    return rows


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    settings = settings_from_args(build_parser().parse_args(argv))
    run(settings, console or Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
