"""``taxgate bench worker --master HOST:PORT``: lend this machine's cores to a bench run's load.

A Locust worker for a run started elsewhere with ``taxgate bench --expect-workers N``:
it sends its share of each round's users and reports their samples and its own CPU to
the run's master, until the run ends.
"""

from __future__ import annotations

import argparse

from loadtest.bench.loadlayout import add_master_flag


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_master_flag(parser)


def run(args: argparse.Namespace) -> int:
    # Imported on use: Locust patches the standard library with gevent on import.
    from loadtest.bench import locustworker

    return locustworker.run(args)
