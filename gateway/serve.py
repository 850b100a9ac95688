"""``taxgate serve``: load the settings once, build the app, run it under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.settings import SettingsError, load_settings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML settings file (upstreams, monitors, streaming, audit, ...); "
        "env TAXGATE_* and the flags below override it",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="URL",
        dest="upstreams",
        help="vLLM (or other OpenAI-compatible) server base URL, e.g. "
        "http://127.0.0.1:8000; repeat for several replicas",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="gateway processes serving the port (default 1). One process "
        "uses one core: with output monitors or many streams, use about "
        "one worker per core left free by the upstream and monitors. "
        "/metrics aggregates all workers; they share the audit store",
    )


def run(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.http_server import build_server

    try:
        settings = load_settings(
            args.config, env=os.environ, overrides={"upstreams": args.upstreams, "host": args.host, "port": args.port}
        )
    except SettingsError as exc:
        print(f"taxgate serve: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("taxgate serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _run_workers(settings, args.workers)
    app = create_app(settings)
    try:
        server, sockets = build_server(app, settings)
    except OSError as exc:
        print(
            f"taxgate serve: cannot listen on {settings.host}:{settings.port} and "
            f"metrics.listen {settings.metrics.listen}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:
        if app.state.startup_error is None:
            raise
        # uvicorn printed the traceback; end on what to fix.
        print(f"taxgate serve: cannot start: {app.state.startup_error}", file=sys.stderr)
        return 2 if exc.code else 0
    return 0


def _run_workers(settings, count: int) -> int:
    from gateway.app import create_app
    from gateway.http_server import bind, build_server
    from gateway.workers import enable_multiprocess_metrics, run_workers

    metrics_dir = enable_multiprocess_metrics()
    try:
        sockets = [bind(settings.host, settings.port)]
        if settings.metrics.address is not None:
            sockets.append(bind(*settings.metrics.address))
    except OSError as exc:
        print(f"taxgate serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 2

    def serve_one(shared: list) -> int:
        app = create_app(settings, metrics_dir=metrics_dir)
        server, _ = build_server(app, settings)
        try:
            server.run(sockets=shared)
        except SystemExit as exc:
            if app.state.startup_error is not None:
                print(f"taxgate serve: cannot start: {app.state.startup_error}", file=sys.stderr)
            return 2 if exc.code else 0
        return 0

    return run_workers(count, sockets, serve_one, metrics_dir)
