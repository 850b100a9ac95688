"""``taxgate bench`` (also ``python -m loadtest.bench``): flags, then run, report, summary.

Its other measurements are subcommands (``SUBCOMMANDS``), each a module with
``configure_parser`` and ``run`` that shares the flags, round plan, progress bar and
report writers of ``kit``: ``monitors`` (the monitors alone, in process), ``budget`` (a tax
budget in front of a slow judge), ``audit`` (what the audit log costs), ``soak`` (minutes
of faults under load).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
from pathlib import Path

from rich.console import Console

from loadtest.bench.kit import command_line, levels, machine_description, quiet_logs, summary_console, terminate
from loadtest.bench.matrix import DEFAULT_MATRIX, MatrixError
from loadtest.bench.options import DEFAULT_SIM_PROFILE, PROFILES, BenchOptions
from loadtest.bench.routes import CHAT, ROUTES
from loadtest.bench.targets import TargetError, parse_targets
from loadtest.datasets import DatasetError, DatasetSpec
from loadtest.harness import ProcessError

logger = logging.getLogger(__name__)
PARTIAL = 3  # exit status: a report was written, but something it set out to measure is missing

# `taxgate bench NAME`: module with configure_parser(parser) and run(args) -> int, help.
SUBCOMMANDS = {
    "monitors": (
        "loadtest.bench.monitorcli",
        "each monitor's check latency and throughput in process, at several micro-batch "
        "sizes (no HTTP, no upstream); see `taxgate bench monitors --help`",
    ),
    "budget": (
        "loadtest.bench.budget",
        "what a tax budget buys and costs: a slow judge driven past its capacity, with and "
        "without `budgets`; see `taxgate bench budget --help`",
    ),
    "audit": (
        "loadtest.bench.audit",
        "what the audit log costs: the store alone, then gateways with SQLite or PostgreSQL "
        "audit under load; see `taxgate bench audit --help`",
    ),
    "soak": (
        "loadtest.bench.soak",
        "minutes of mixed load with injected upstream faults and client disconnects: every "
        "answer defined, no slot leaked, RSS flat; see `taxgate bench soak --help`",
    ),
    "worker": (
        "loadtest.bench.workercli",
        "join a run's load as a Locust worker from another machine (the run: `taxgate "
        "bench --expect-workers N`); see `taxgate bench worker --help`",
    ),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    quick, full = PROFILES["quick"], PROFILES["full"]
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help=f"the default: {quick.describe()} (requests per round x repeats; ~5 min on 2 cores)",
    )
    profile.add_argument(
        "--full",
        dest="profile",
        action="store_const",
        const="full",
        help=f"{full.describe()}: longer answers, more samples (~25 min on 2 cores)",
    )
    parser.set_defaults(profile="quick")
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--upstream",
        metavar="URL",
        help="a running OpenAI-compatible server (e.g. vLLM at "
        "http://127.0.0.1:8000) instead of the built-in simulator, for the "
        "load rounds; the safety pass still runs in front of an echo "
        "simulator (it measures the monitor sets, not the model)",
    )
    what.add_argument(
        "--route",
        choices=ROUTES,
        default=CHAT,
        help="the API every request goes over, in the rounds, the warm-up and "
        "the safety pass: chat (default: streamed /v1/chat/completions) or "
        "responses (streamed /v1/responses, the OpenAI Responses API: TTFT "
        "at the first response.output_text.delta, ITL between deltas, E2E "
        "to the final response.completed/incomplete event, output tokens "
        "from its usage)",
    )
    what.add_argument(
        "--profile",
        dest="sim_profile",
        default=DEFAULT_SIM_PROFILE,
        metavar="NAME",
        help=f"simulator latency profile (default {DEFAULT_SIM_PROFILE}; see `taxgate sim --help`)",
    )
    what.add_argument("--model", help="model name (default: the upstream's first model)")
    what.add_argument(
        "--classifier-url",
        metavar="URL",
        help="a vLLM pooling server (`vllm serve M --runner pooling`) for the "
        "`classifier` monitors of the matrix that name no base_url (default: "
        "the simulator's /classify; needed with --upstream)",
    )
    what.add_argument(
        "--classifier-model", metavar="NAME", help="its served model name (default: the simulator's sim-guard)"
    )
    what.add_argument(
        "--matrix", type=Path, metavar="FILE", help=f"scenario matrix YAML (default {DEFAULT_MATRIX.name} in loadtest/)"
    )
    what.add_argument("--sets", metavar="A,B", help="monitor sets of the matrix to run (default: all of them)")
    what.add_argument(
        "--dataset",
        type=DatasetSpec.parse,
        action="append",
        metavar="[NAME=]PATH",
        help="JSONL/CSV file or folder of {text, label}, optionally with a column "
        "map PATH:text=COL,label=COL (or label==VALUE); repeatable: the safety "
        "pass reports each set apart, the load uses the first (default: the "
        "bundled one)",
    )
    what.add_argument(
        "--load-labels",
        default="benign",
        metavar="LABELS",
        help="labels of the prompts sent as load (default benign: the tax "
        "legitimate traffic pays); 'all' for every item",
    )
    what.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="an already-running OpenAI-compatible endpoint (a deployed gateway, "
        "another gateway, a vLLM router) measured as scenario NAME against "
        "direct (--upstream: give the one it forwards to); repeatable. "
        "--sets none runs only the targets",
    )
    what.add_argument(
        "--target-key",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="bearer key for target NAME, or NAME=env:VAR to read it from $VAR (kept out of the report and the logs)",
    )
    load = parser.add_argument_group("load generator (Locust)")
    load.add_argument(
        "--load-workers",
        type=int,
        default=0,
        metavar="N",
        help="load from a Locust master and N worker processes on this host "
        "instead of one process (default 0); same rounds, statistics and "
        "prompts",
    )
    load.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        metavar="N",
        help="also wait for N workers started elsewhere with `taxgate bench worker --master HOST:PORT` (default 0)",
    )
    load.add_argument(
        "--master-bind",
        default="",
        metavar="HOST:PORT",
        help="where the Locust master listens for workers (default: loopback and "
        "a free port; 0.0.0.0:5557 with --expect-workers)",
    )
    how = parser.add_argument_group("how long (override the profile)")
    how.add_argument("--concurrency", type=levels, metavar="N,N,...", help="concurrent users per level, e.g. 1,16,64")
    how.add_argument(
        "--requests",
        type=int,
        metavar="N",
        dest="requests_per_user",
        help="requests per user per round, every level (default: the profile's)",
    )
    how.add_argument("--duration", type=int, metavar="S", help="rounds of S seconds instead of a request count")
    how.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="rounds per scenario and level, exactly (default: the profile's, per "
        "level, then up to its extra repeats of the pairs whose TTFT/E2E p50 "
        "tax interval is still wider than --target-ms and --target-relative, "
        "or whose tok/s ratio interval is over ±0.05)",
    )
    how.add_argument("--warmup", type=float, metavar="S", help="warm-up seconds (all at once)")
    how.add_argument("--max-tokens", type=int, metavar="N", help="output tokens per request")
    how.add_argument("--seed", type=int, default=0, help="seed of prompts and simulator")
    how.add_argument(
        "--target-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="the half-width a TTFT/E2E p50 tax interval must reach before the "
        "profile's extra repeats stop (default 5)",
    )
    how.add_argument(
        "--target-relative",
        type=float,
        default=0.10,
        metavar="F",
        help="or this fraction of the tax, whichever is wider (default 0.10)",
    )
    how.add_argument(
        "--ci",
        dest="ci_method",
        choices=["t", "bootstrap"],
        default="t",
        help="interval over repeats: Student t (default) or bootstrap",
    )
    safety = parser.add_argument_group("safety pass")
    safety.add_argument(
        "--no-safety", dest="safety", action="store_false", help="skip the catch-rate pass over the labelled dataset"
    )
    safety.add_argument(
        "--safety-concurrency",
        type=int,
        default=32,
        metavar="N",
        help="requests in flight per monitor set (default 32)",
    )
    safety.add_argument(
        "--safety-stream", action="store_true", help="stream the safety requests (default: plain JSON, cheaper)"
    )
    safety.add_argument(
        "--safety-max-tokens",
        type=int,
        default=256,
        metavar="N",
        help="cap on each safety answer (default 256; the simulator's echo stops at the prompt's end anyway)",
    )
    safety.add_argument(
        "--safety-sample",
        type=int,
        default=0,
        metavar="N",
        help="send at most N items per label (default 0: every item); for slow upstreams such as vLLM on CPU",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        default=Path("taxgate-report"),
        metavar="DIR",
        help="report folder (default ./taxgate-report)",
    )
    out.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    out.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "taxgate",
        metavar="DIR",
        help="where locally built models are kept",
    )
    out.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="how long servers may take to become ready (default 180)",
    )
    out.add_argument(
        "--verbose", action="store_true", help="show the libraries' INFO logs (each HTTP request, ...) on the terminal"
    )
    # Optional: plain `taxgate bench [flags]` is the safety-tax run. A subcommand's flags
    # go after its name; they share the names and meanings of the flags above.
    sub = parser.add_subparsers(
        dest="bench_command",
        title="other measurements",
        metavar="{" + ",".join(SUBCOMMANDS) + "}",
        help="instead of the safety-tax run",
    )
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        child = sub.add_parser(name, help=help_text, description=module.__doc__.split("\n\n")[1].replace("\n", " "))
        module.configure_parser(child)
        child.set_defaults(_bench_module=module)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    profile = PROFILES[args.profile]

    def pick(value, default):
        return default if value is None else value

    return BenchOptions(
        out=args.out.resolve(),
        profile_name=args.profile,
        concurrency=pick(args.concurrency, profile.concurrency),
        duration_s=args.duration,
        repeats=args.repeats,
        requests_per_user=args.requests_per_user,
        warmup_s=pick(args.warmup, profile.warmup_s),
        max_tokens=pick(args.max_tokens, profile.max_tokens),
        upstream=args.upstream,
        route=args.route,
        sim_profile=args.sim_profile,
        model=args.model,
        classifier_url=args.classifier_url,
        classifier_model=args.classifier_model,
        matrix=args.matrix,
        sets=tuple(s for s in args.sets.split(",") if s) if args.sets else None,
        datasets=tuple(args.dataset or ()),
        load_labels=args.load_labels,
        seed=args.seed,
        ci_method=args.ci_method,
        target_ms=args.target_ms,
        target_relative=args.target_relative,
        safety=args.safety,
        safety_concurrency=args.safety_concurrency,
        safety_stream=args.safety_stream,
        safety_max_tokens=args.safety_max_tokens,
        safety_sample=args.safety_sample,
        cache_dir=args.cache_dir,
        ready_timeout_s=args.ready_timeout,
        plots=args.plots,
        verbose=args.verbose,
        command=command_line(),
        targets=parse_targets(args.target, args.target_key),
        load_workers=args.load_workers,
        expect_workers=args.expect_workers,
        master_bind=args.master_bind,
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "bench_command", None):
        return args._bench_module.run(args)
    # Imported here: the runner pulls httpx/rich/yaml, the report matplotlib; `taxgate --help`
    # and the other subcommands should not pay for that.
    from loadtest.bench.plots import write_plots
    from loadtest.bench.report import build_report, write_report
    from loadtest.bench.runner import BenchRunner
    from loadtest.bench.terminal import print_summary

    console = Console(stderr=True)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        console.print(f"taxgate bench: {exc}")
        return 2
    quiet_logs(options.verbose)
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        result = BenchRunner(options, console).run()
    except (MatrixError, DatasetError, TargetError) as exc:
        console.print(f"[red]taxgate bench: {exc}[/]")
        return 2
    except ProcessError as exc:
        console.print("[red]taxgate bench failed:[/]", end=" ")
        console.print(str(exc), markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("taxgate bench: interrupted; all servers it started are stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = build_report(result, machine_description())
    plots = write_plots(report, options.out) if options.plots else []
    write_report(report, options.out, plots)
    print_summary(report, summary_console(), options.out)
    for missing in result.missing:
        console.print(f"[yellow]partial report: {missing}[/]", highlight=False)
    return PARTIAL if result.missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Measure the safety tax: direct vs gateway vs monitor sets, under load.",
    )
    configure_parser(parser)
    logging.basicConfig(level=logging.WARNING)
    return run(parser.parse_args(argv))
