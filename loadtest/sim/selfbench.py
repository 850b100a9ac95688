"""How many chunks per second the simulator sustains, and at what CPU cost.

``python -m loadtest.sim.selfbench`` starts the simulator in a subprocess (so its
CPU time is its own), keeps N streaming chat requests with ``ignore_eos`` going
for a fixed time, and counts SSE events. Clients do as little per chunk as they
can (count event separators in raw bytes). ``--client httpx`` is what an
ordinary Python load generator costs; ``--client raw`` (HTTP/1.1 over asyncio
streams) is several times cheaper, so on a small machine it can push the
simulator closer to its own limit. CPU time per chunk is the figure that holds
up on a busy machine; rates depend on what else is running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from loadtest.harness import Server, free_port, wait_ready

MODEL = "sim-llama-8b"
# Role chunk and [DONE] are events but not content chunks.
NON_CONTENT_EVENTS = 2


@dataclass
class Tally:
    events: int = 0
    requests: int = 0

    @property
    def chunks(self) -> int:
        return self.events - NON_CONTENT_EVENTS * self.requests


@dataclass
class Measurement:
    tally: Tally
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float
    # Mean gap between engine steps as the simulator itself saw it (its ITL histogram).
    engine_itl_s: float


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # stat fields 14 and 15 (utime, stime), counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def itl_totals(base_url: str) -> tuple[float, float]:
    """(sum, count) of the simulator's vllm:inter_token_latency_seconds histogram."""
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in httpx.get(base_url + "/metrics", timeout=5).text.splitlines():
        for suffix in totals:
            if line.startswith("vllm:inter_token_latency_seconds" + suffix + "{"):
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return totals["_sum"], totals["_count"]


def count_events(data: bytes, carry: bytes) -> tuple[int, bytes]:
    """SSE separators in ``data``, counting one split across reads; returns the new carry."""
    joined = carry + data
    return joined.count(b"\n\n"), joined[-1:] if joined.endswith(b"\n") else b""


def request_body(max_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "stream": True,
            "ignore_eos": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Tell me about the sea."}],
        }
    )


Streamer = Callable[[Tally, float], Awaitable[None]]


def httpx_streamer(client: httpx.AsyncClient, body: bytes) -> Streamer:
    headers = {"content-type": "application/json"}

    async def stream(tally: Tally, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            async with client.stream("POST", "/v1/chat/completions", content=body, headers=headers) as response:
                response.raise_for_status()
                carry = b""
                async for data in response.aiter_raw():
                    events, carry = count_events(data, carry)
                    tally.events += events
            tally.requests += 1

    return stream


def raw_streamer(port: int, body: bytes) -> Streamer:
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    # The simulator streams with chunked transfer encoding; this ends every response.
    last_chunk = b"\r\n0\r\n\r\n"

    async def stream(tally: Tally, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"simulator answered {head[:40]!r}")
                carry, tail = b"", b""
                while not tail.endswith(last_chunk):
                    data = await reader.read(65536)
                    if not data:
                        raise RuntimeError("simulator closed the connection mid-stream")
                    events, carry = count_events(data, carry)
                    tally.events += events
                    tail = (tail + data)[-len(last_chunk) :]
                tally.requests += 1
        finally:
            writer.close()

    return stream


async def drive(base_url: str, port: int, server_pid: int, args: argparse.Namespace) -> Measurement:
    body = request_body(args.max_tokens)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        stream = httpx_streamer(client, body) if args.client == "httpx" else raw_streamer(port, body)

        async def phase(seconds: float) -> Tally:
            tally = Tally()
            stop_at = time.perf_counter() + seconds
            await asyncio.gather(*(stream(tally, stop_at) for _ in range(args.concurrency)))
            return tally

        await phase(args.warmup)
        itl_before = itl_totals(base_url)
        server_before = process_cpu_seconds(server_pid)
        client_before = time.process_time()
        start = time.perf_counter()
        tally = await phase(args.seconds)
        elapsed = time.perf_counter() - start
        server_after = process_cpu_seconds(server_pid)
        client_cpu = time.process_time() - client_before
        itl_after = itl_totals(base_url)
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    itl_count = itl_after[1] - itl_before[1]
    engine_itl = (itl_after[0] - itl_before[0]) / itl_count if itl_count else 0.0
    return Measurement(tally, elapsed, server_cpu, client_cpu, engine_itl)


def report(result: Measurement, args: argparse.Namespace) -> None:
    seconds = result.seconds
    chunks = max(result.tally.chunks, 1)
    print(
        f"profile={args.profile} client={args.client} concurrency={args.concurrency} "
        f"max_tokens={args.max_tokens} measured={seconds:.1f}s "
        f"loadavg={os.getloadavg()[0]:.1f} cpus={os.cpu_count()}"
    )
    print(f"chunks/s: {result.tally.chunks / seconds:,.0f}   requests/s: {result.tally.requests / seconds:.1f}")
    if result.server_cpu_s is not None:
        print(
            f"simulator CPU: {result.server_cpu_s / seconds:.0%} of one core, "
            f"{result.server_cpu_s / chunks * 1e6:.1f} us per chunk"
        )
    print(
        f"client CPU:    {result.client_cpu_s / seconds:.0%} of one core, "
        f"{result.client_cpu_s / chunks * 1e6:.1f} us per chunk"
    )
    print(f"engine step gap (ITL seen by the simulator): {result.engine_itl_s * 1e3:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sim.selfbench", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="instant", help="latency profile (default instant)")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="load generator: httpx, or a minimal HTTP/1.1 client that costs less per chunk (default httpx)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent streams")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured lead-in")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per request")
    args = parser.parse_args(argv)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.sim",
            "--profile",
            args.profile,
            "--port",
            str(port),
            "--model",
            MODEL,
            "--log-level",
            "warning",
        ]
    )
    try:
        wait_ready(Server("the simulator", base_url + "/health", server), timeout_s=20)
        result = asyncio.run(drive(base_url, port, server.pid, args))
    finally:
        server.terminate()
        server.wait(timeout=10)
    report(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
