"""``taxgate serve``: load the settings once, build the app, run it under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.settings import SettingsError, load_settings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML settings file (upstreams, monitors, streaming, audit, ...); "
                             "env TAXGATE_* and the flags below override it")
    parser.add_argument("--upstream", action="append", metavar="URL", dest="upstreams",
                        help="vLLM (or other OpenAI-compatible) server base URL, e.g. "
                             "http://127.0.0.1:8000; repeat for several replicas")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (default 1; each has its own audit "
                             "writer, so give each its own audit.path or use one worker)")


def run(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.http_server import build_server

    try:
        settings = load_settings(args.config, env=os.environ,
                                 overrides={"upstreams": args.upstreams, "host": args.host,
                                            "port": args.port})
    except SettingsError as exc:
        print(f"taxgate serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    try:
        server, sockets = build_server(app, settings)
    except OSError as exc:
        print(f"taxgate serve: cannot listen on {settings.host}:{settings.port} and "
              f"metrics.listen {settings.metrics.listen}: {exc.strerror}", file=sys.stderr)
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
