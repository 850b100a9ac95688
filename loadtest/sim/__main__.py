"""``python -m loadtest.sim``: the simulator without the taxgate CLI."""

from __future__ import annotations

import argparse
import sys

from loadtest.sim.cli import configure_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.sim",
        description="An OpenAI-compatible server that behaves like vLLM under load, without a GPU.",
    )
    configure_parser(parser)
    # taxgate's own parser has this flag globally; standalone, the simulator adds it.
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
