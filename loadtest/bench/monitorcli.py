"""``taxgate bench monitors``: each monitor's check latency and throughput, in process.

What micro-batching buys a model-sized monitor, and what each monitor costs per text,
without HTTP or an upstream: C concurrent single-text requests through what the gateway
puts in front of the monitor, at each ``max_batch``, interleaved over repeats.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from rich.console import Console

from loadtest.bench.localmodel import PRESETS
from monitors.config import BatchSpec


def _batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``: sorted, unique, each >= 1."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be integers >= 1")
    return tuple(values)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected monitor names like detoxify,pii")
    return names


def configure_parser(parser: argparse.ArgumentParser) -> None:
    # Dests carry a prefix: `taxgate bench` has flags of the same names, and argparse
    # copies a subcommand's values over its parent's.
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--monitors",
        dest="m_monitors",
        type=_names,
        default=("detoxify",),
        metavar="A,B",
        help="monitors to measure, by registry name (default detoxify); "
        "each is built as the gateway builds it, with default options",
    )
    what.add_argument(
        "--model",
        dest="m_model",
        choices=PRESETS,
        default="bert-base",
        help="the local random-weight Detoxify model: bert-base (the real model's cost, "
        "the default) or tiny (a smoke test in seconds)",
    )
    what.add_argument(
        "--model-dir",
        dest="m_model_dir",
        type=Path,
        metavar="DIR",
        help="use the Detoxify checkpoint in DIR (detoxify.ckpt and hf-config/, as "
        "`python -m loadtest.tiny_detoxify DIR` writes) instead of --model",
    )
    what.add_argument(
        "--device", dest="m_device", choices=["cpu", "cuda"], default="cpu", help="where Detoxify runs (default cpu)"
    )
    what.add_argument(
        "--batches",
        dest="m_batches",
        type=_batches,
        default=(1, 32),
        metavar="N,N,...",
        help="max_batch settings of the micro-batcher to compare; the smallest is the speed-up baseline (default 1,32)",
    )
    what.add_argument(
        "--dataset",
        dest="m_dataset",
        type=Path,
        metavar="PATH",
        help="JSONL/CSV file or folder of texts (default: the bundled datasets)",
    )
    how = parser.add_argument_group("how long")
    how.add_argument(
        "--concurrency",
        dest="m_concurrency",
        type=int,
        default=32,
        metavar="C",
        help="concurrent requests, each with one text in flight (default 32)",
    )
    stop = how.add_mutually_exclusive_group()
    stop.add_argument(
        "--duration",
        dest="m_duration",
        type=float,
        metavar="S",
        help="seconds each round issues texts; those in flight are still counted (default 10 unless --requests)",
    )
    stop.add_argument(
        "--requests", dest="m_requests", type=int, metavar="N", help="texts per round instead of a duration"
    )
    how.add_argument(
        "--repeats",
        dest="m_repeats",
        type=int,
        default=3,
        metavar="N",
        help="rounds per setting, interleaved (default 3; the interval needs >= 2)",
    )
    how.add_argument(
        "--max-wait-ms",
        dest="m_max_wait_ms",
        type=float,
        default=BatchSpec().max_wait_ms,
        metavar="MS",
        help="how long the batcher waits to fill a batch (default %(default)s, the gateway's)",
    )
    how.add_argument(
        "--warmup",
        dest="m_warmup",
        type=int,
        default=2,
        metavar="N",
        help="untimed calls per monitor and batch size before the rounds (default 2)",
    )
    how.add_argument(
        "--torch-threads",
        dest="m_torch_threads",
        type=int,
        metavar="N",
        help="torch intra-op threads (default: torch's own, usually the core count)",
    )
    how.add_argument(
        "--seed", dest="m_seed", type=int, default=0, metavar="N", help="seed of the text order (default 0)"
    )
    how.add_argument(
        "--ci",
        dest="m_ci_method",
        choices=["t", "bootstrap"],
        default="t",
        help="interval over repeats: Student t (default) or bootstrap",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        dest="m_out",
        type=Path,
        default=Path("taxgate-monitors"),
        metavar="DIR",
        help="report folder: report.json, report.md, report.html (default ./taxgate-monitors)",
    )
    out.add_argument(
        "--cache-dir",
        dest="m_cache_dir",
        type=Path,
        default=Path.home() / ".cache" / "taxgate",
        metavar="DIR",
        help="where locally built models are kept (shared with `taxgate bench`)",
    )


def options_from_args(args: argparse.Namespace):
    from loadtest.bench.kit import command_line
    from loadtest.bench.monitorrun import MonitorBenchOptions

    duration = args.m_duration if args.m_duration is not None or args.m_requests is not None else 10.0
    return MonitorBenchOptions(
        monitors=args.m_monitors,
        model=args.m_model,
        model_dir=args.m_model_dir.resolve() if args.m_model_dir else None,
        device=args.m_device,
        batches=args.m_batches,
        concurrency=args.m_concurrency,
        duration_s=duration,
        requests=args.m_requests,
        repeats=args.m_repeats,
        max_wait_ms=args.m_max_wait_ms,
        warmup=args.m_warmup,
        torch_threads=args.m_torch_threads,
        dataset=args.m_dataset,
        seed=args.m_seed,
        ci_method=args.m_ci_method,
        out=args.m_out.resolve(),
        cache_dir=args.m_cache_dir,
        command=command_line(),
    )


def run(args: argparse.Namespace, *, registry=None) -> int:
    # Imported here: torch, transformers and the monitors load only when this runs.
    from loadtest.bench.kit import machine_description, quiet_logs, summary_console, terminate
    from loadtest.bench.monitorreport import all_tables, build_report, write_report
    from loadtest.bench.monitorrun import MonitorBenchRunner
    from loadtest.bench.terminal import rich_table
    from loadtest.datasets import DatasetError
    from loadtest.harness import ProcessError
    from monitors.base import MonitorLoadError

    console = Console(stderr=True)

    def error(message: str) -> None:  # paths and names may hold [brackets]: no markup
        console.print(f"taxgate bench monitors: {message}", style="red", markup=False, highlight=False)

    try:
        options = options_from_args(args)
    except ValueError as exc:
        error(str(exc))
        return 2
    quiet_logs(verbose=False)
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        result = MonitorBenchRunner(options, console, registry).run()
    except (ValueError, DatasetError, MonitorLoadError) as exc:
        error(str(exc))
        return 2
    except ProcessError as exc:  # the local model's build failed; the message has its log
        error(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("taxgate bench monitors: interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = build_report(result, machine_description())
    write_report(report, options.out)
    out = summary_console()
    for table in all_tables(report):  # the headline first
        out.print(rich_table(table))
    for note in report.meta.notes:
        out.print(f"[yellow]note: {note}[/]")
    out.print(f"report: {options.out / 'report.html'}  (also report.md, report.json) - {report.meta.wall_s:.0f} s")
    return 0
