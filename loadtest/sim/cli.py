"""``taxgate sim``: serve the simulated vLLM server with uvicorn."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from loadtest.datasets import load_dataset
from loadtest.sim.classify import CLASSIFIER_PROFILES
from loadtest.sim.faults import FaultRates
from loadtest.sim.output import OUTPUT_MODES
from loadtest.sim.settings import SimSettings
from loadtest.sim.timing import PROFILES

DEFAULTS = SimSettings()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to ``parser`` (a subcommand's or its own)."""
    parser.add_argument("--host", default=DEFAULTS.host, help=f"address to listen on (default {DEFAULTS.host})")
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help=f"port to listen on (default {DEFAULTS.port})")
    parser.add_argument(
        "--profile",
        default=DEFAULTS.profile,
        choices=sorted(PROFILES),
        help=f"latency profile to imitate (default {DEFAULTS.profile}); "
        "'instant' measures a gateway alone, 'tiny-cpu' suits tests",
    )
    parser.add_argument(
        "--output-mode",
        default=DEFAULTS.output_mode,
        choices=OUTPUT_MODES,
        help="what the model says: echo the last user message / prompt, "
        "texts from a JSONL corpus, or seeded random words "
        f"(default {DEFAULTS.output_mode})",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        metavar="PATH",
        help='JSONL file of {"text", "label"} lines for --output-mode corpus (default: the bundled labelled dataset)',
    )
    parser.add_argument(
        "--max-num-seqs",
        type=int,
        default=None,
        metavar="N",
        help="override the profile's batch size limit; requests beyond it queue, as in vLLM",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help=f"seed for timing jitter and generated text (default {DEFAULTS.seed})",
    )
    parser.add_argument(
        "--model",
        default=DEFAULTS.model,
        metavar="NAME",
        help=f"served model name; other names get 404 (default {DEFAULTS.model})",
    )
    parser.add_argument(
        "--max-model-len",
        type=int,
        default=DEFAULTS.max_model_len,
        metavar="TOKENS",
        help=f"context window: prompt plus output tokens (default {DEFAULTS.max_model_len})",
    )
    guard = parser.add_argument_group("the guard classifier on /classify (vLLM's pooling API)")
    guard.add_argument(
        "--classifier-model",
        default=DEFAULTS.classifier_model,
        metavar="NAME",
        help=f"its served model name (default {DEFAULTS.classifier_model}); labels safe, unsafe",
    )
    guard.add_argument(
        "--classifier-profile",
        default=DEFAULTS.classifier_profile,
        choices=sorted(CLASSIFIER_PROFILES),
        help=f"its latency model (default {DEFAULTS.classifier_profile}: a BERT-base guard on one GPU)",
    )
    guard.add_argument(
        "--classifier-max-len",
        type=int,
        default=DEFAULTS.classifier_max_len,
        metavar="TOKENS",
        help=f"its context; longer texts get 400 (default {DEFAULTS.classifier_max_len})",
    )
    faults = parser.add_argument_group("fault injection (for soaks and tests; none by default)")
    faults.add_argument(
        "--fault-reset",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of answers (0-1) whose connection drops part-way",
    )
    faults.add_argument(
        "--fault-stall",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of answers that stop for --fault-stall-s, then go on",
    )
    faults.add_argument(
        "--fault-garbage",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of answers that turn into bytes that are not the "
        "protocol (streamed: a broken event, no [DONE]; else: HTML)",
    )
    faults.add_argument(
        "--fault-stall-s",
        type=float,
        default=DEFAULTS.faults.stall_s,
        metavar="SECONDS",
        help=f"how long a stall lasts unless the client leaves first (default {DEFAULTS.faults.stall_s:g})",
    )


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    return SimSettings(
        host=args.host,
        port=args.port,
        profile=args.profile,
        output_mode=args.output_mode,
        corpus_path=args.corpus,
        max_num_seqs=args.max_num_seqs,
        seed=args.seed,
        model=args.model,
        max_model_len=args.max_model_len,
        classifier_model=args.classifier_model,
        classifier_profile=args.classifier_profile,
        classifier_max_len=args.classifier_max_len,
        faults=FaultRates(
            reset=args.fault_reset, stall=args.fault_stall, garbage=args.fault_garbage, stall_s=args.fault_stall_s
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the process exit code.

    ``args.log_level``, where present, comes from the caller's own parser (``taxgate``
    has a global ``--log-level``); defining it here too would shadow that one.
    """
    import logging

    import uvicorn

    from loadtest.sim.faults import DropInjectedTracebacks
    from loadtest.sim.server import create_sim_app

    try:
        settings = settings_from_args(args)
        if settings.output_mode == "corpus":
            # Read once here so a bad file fails before the server claims its port.
            load_dataset(settings.corpus_path)
    except ValueError as exc:
        print(f"taxgate sim: {exc}", file=sys.stderr)
        return 2
    if settings.faults.total:
        logging.getLogger("uvicorn.error").addFilter(DropInjectedTracebacks())
    # uvloop and httptools are the fast paths; fall back where they are not installed.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        create_sim_app(settings),
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=http,
        access_log=False,
        log_level=getattr(args, "log_level", "info"),
        # Long streams must not hold a Ctrl+C hostage.
        timeout_graceful_shutdown=5,
    )
    return 0
