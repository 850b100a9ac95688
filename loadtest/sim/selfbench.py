"""How many chunks per second the simulator sustains, and at what CPU cost.

``python -m loadtest.sim.selfbench`` starts the simulator in a subprocess (its
CPU time is then its own), opens N concurrent streaming chat requests with
``ignore_eos`` for a fixed time, and counts SSE chunks. The client does as
little per chunk as it can (counts event separators in raw bytes) so that, on a
small machine, it is more likely the simulator that is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat (utime, stime), counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    chunks: int = 0
    requests: int = 0


@dataclass
class Measurement:
    tally: Tally
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float
    # Mean gap between engine steps as the simulator itself saw it (its ITL histogram).
    engine_itl_s: float


def itl_totals(base_url: str) -> tuple[float, float]:
    """(sum, count) of the simulator's vllm:inter_token_latency_seconds histogram."""
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in httpx.get(base_url + "/metrics", timeout=5).text.splitlines():
        for suffix in totals:
            if line.startswith("vllm:inter_token_latency_seconds" + suffix + "{"):
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return totals["_sum"], totals["_count"]


async def stream_forever(client: httpx.AsyncClient, body: dict, tally: Tally,
                         stop_at: float) -> None:
    while time.perf_counter() < stop_at:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            # Carry the last byte over so a separator split across two reads still counts.
            last = b""
            async for data in response.aiter_raw():
                tally.chunks += (last + data).count(b"\n\n")
                last = data[-1:] if data.endswith(b"\n") and not data.endswith(b"\n\n") else b""
        # The [DONE] line is not a content chunk, nor is the role chunk.
        tally.chunks -= 2
        tally.requests += 1


async def drive(base_url: str, server_pid: int, concurrency: int, seconds: float,
                max_tokens: int, warmup: float) -> Measurement:
    body = {"model": "sim-llama-8b", "stream": True, "ignore_eos": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Tell me about the sea and the sky."}]}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        warm = Tally()
        await asyncio.gather(*(stream_forever(client, body, warm, time.perf_counter() + warmup)
                               for _ in range(concurrency)))
        tally = Tally()
        itl_before = itl_totals(base_url)
        server_before = process_cpu_seconds(server_pid)
        client_before = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(stream_forever(client, body, tally, start + seconds)
                               for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_after = process_cpu_seconds(server_pid)
        client_cpu = time.process_time() - client_before
        itl_after = itl_totals(base_url)
        server_cpu = (None if server_before is None or server_after is None
                      else server_after - server_before)
        itl_count = itl_after[1] - itl_before[1]
        engine_itl = (itl_after[0] - itl_before[0]) / itl_count if itl_count else 0.0
        return Measurement(tally, elapsed, server_cpu, client_cpu, engine_itl)


def wait_healthy(base_url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"simulator at {base_url} did not become healthy in {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sim.selfbench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="instant", help="latency profile (default instant)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent streams")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured lead-in")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per request")
    args = parser.parse_args(argv)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "loadtest.sim", "--profile", args.profile,
                               "--port", str(port), "--log-level", "warning"])
    try:
        wait_healthy(base_url)
        result = asyncio.run(drive(base_url, server.pid, args.concurrency, args.seconds,
                                   args.max_tokens, args.warmup))
    finally:
        server.terminate()
        server.wait(timeout=10)
    seconds = result.seconds
    print(f"profile={args.profile} concurrency={args.concurrency} "
          f"max_tokens={args.max_tokens} measured={seconds:.1f}s")
    print(f"chunks/s: {result.tally.chunks / seconds:,.0f}   "
          f"requests/s: {result.tally.requests / seconds:.1f}")
    chunks = max(result.tally.chunks, 1)
    if result.server_cpu_s is not None:
        print(f"simulator CPU: {result.server_cpu_s / seconds:.0%} of one core, "
              f"{result.server_cpu_s / chunks * 1e6:.1f} us per chunk")
    print(f"client CPU:    {result.client_cpu_s / seconds:.0%} of one core, "
          f"{result.client_cpu_s / chunks * 1e6:.1f} us per chunk")
    print(f"engine step gap (ITL seen by the simulator): {result.engine_itl_s * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
