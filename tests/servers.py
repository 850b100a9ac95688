"""Real servers on loopback for integration tests: vLLM (CPU build), the gateway, any ASGI app,
PostgreSQL.

One fixture factory for all: tests ask for a server, get its base URL, and the
session tears it down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from loadtest.harness import Server, free_port, log_tail, wait_ready

ROOT = Path(__file__).resolve().parents[1]
VLLM_MODEL_NAME = "tiny-llama"
VLLM_GUARD_NAME = "tiny-guard"


def wait_http(
    url: str, timeout_s: float, *, proc: subprocess.Popen | None = None, log_path: Path | None = None
) -> None:
    """Wait until ``url`` answers 200; fail at once, with the log tail, if ``proc`` exits."""
    wait_ready(Server(f"the server at {url}", url, proc, log_path), timeout_s, poll_s=0.2)


def _log_tail(path: Path | None) -> str:
    return "" if path is None else "\n--- server log tail ---\n" + log_tail(path, 30)


class ThreadedServer:
    """An ASGI app under uvicorn in a background thread (own event loop)."""

    def __init__(self, app, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            loop="asyncio",
            http="h11",
            access_log=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, ready_path: str = "/health", timeout_s: float = 30) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server thread died during startup (see log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.05)
        wait_http(self.base_url + ready_path, timeout_s)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@dataclass
class VLLMServer:
    """vLLM's OpenAI server (CPU build, own venv) serving a tiny random model built locally."""

    workdir: Path
    python: Path = field(
        default_factory=lambda: Path(os.environ.get("TAXGATE_VLLM_PYTHON", ROOT / ".venvs" / "vllm" / "bin" / "python"))
    )
    model: str = VLLM_MODEL_NAME
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # Where vLLM exports its OpenTelemetry spans (OTLP/HTTP), if anywhere.
    otlp_traces_endpoint: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "vllm.log"

    def available(self) -> bool:
        return self.python.exists()

    def build_model(self) -> Path:
        from loadtest.tiny_llm import build_tiny_llm

        return build_tiny_llm(self.workdir / "model")

    def server_args(self) -> list[str]:
        return ["--max-model-len", "1024"]

    def start(self) -> None:
        """Build the model and launch the server; do not wait (startup takes ~1 minute)."""
        model_dir = self.build_model()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        cmd = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.server_args(),
            "--seed",
            "0",
        ]
        if self.otlp_traces_endpoint is not None:
            cmd += ["--otlp-traces-endpoint", self.otlp_traces_endpoint]
            # vLLM's exporter speaks gRPC unless told; its batches leave every 200 ms.
            env.update(
                {
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                    "OTEL_BSP_SCHEDULE_DELAY": "200",
                    "OTEL_SERVICE_NAME": "vllm",
                }
            )
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)

    def wait_ready(self, timeout_s: float = 420) -> None:
        wait_http(self.base_url + "/health", timeout_s, proc=self.proc, log_path=self.log_path)
        wait_http(self.base_url + "/v1/models", 60, proc=self.proc, log_path=self.log_path)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def metric(self, name: str) -> float:
        """Sum of a vLLM metric's samples (e.g. ``vllm:num_requests_running``)."""
        text = httpx.get(self.base_url + "/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class VLLMPoolingServer(VLLMServer):
    """vLLM's pooling runner (``--runner pooling``: ``/classify``) serving a tiny random-weight
    BERT guard classifier built locally (labels safe/unsafe; see loadtest/tiny_classifier.py)."""

    model: str = VLLM_GUARD_NAME
    max_model_len: int = 128

    def build_model(self) -> Path:
        from loadtest.tiny_classifier import build_tiny_classifier

        return build_tiny_classifier(self.workdir / "model", max_positions=self.max_model_len)

    def server_args(self) -> list[str]:
        return ["--runner", "pooling", "--max-model-len", str(self.max_model_len)]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """End the engine at once (SIGKILL), API server and engine core alike, as a crash
        or an evicted pod would."""
        import psutil

        if self.proc is None:
            return
        processes = [psutil.Process(self.proc.pid)]
        processes += processes[0].children(recursive=True)
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=30)


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` / ``pg_ctl``: TAXGATE_PG_BIN, Debian's newest, or PATH."""
    if os.environ.get("TAXGATE_PG_BIN"):
        return Path(os.environ["TAXGATE_PG_BIN"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL: own data directory in a temp dir, loopback, a free port.

    PostgreSQL refuses to run as root, so under root the server commands run as the
    ``postgres`` user (Debian's package creates it) through ``runuser``. Trust auth on
    127.0.0.1 only; the superuser is ``postgres``. ``fsync`` is off by default: the tests
    kill gateways, not the database, and a commit still has to reach the server.
    """

    def __init__(self, *, port: int | None = None, fsync: bool = False, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or postgres_bin()
        self.port = port or free_port()
        self.fsync = fsync
        # Not pytest's tmp_path: that is root-only (0700), and the server runs as postgres.
        self.workdir = Path(tempfile.mkdtemp(prefix="taxgate-pg-"))
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def available(self) -> bool:
        return self.bin_dir is not None and (self.bin_dir / "pg_ctl").exists()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout_s: float = 60) -> None:
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}" + _log_tail(self.log_path)
            )

    def init(self) -> PostgresServer:
        if self._as_postgres:
            shutil.chown(self.workdir, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients, clean shutdown; ``immediate``: like a crash."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """A fresh empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
