"""Gateway CPU per streamed token, by hand: one gateway, the simulator upstream, N streams.

    python -m loadtest.stream_cpu GATEWAY_CONFIG.yaml [--streams 1] [--words 440]

Starts ``taxgate sim`` (``llama-8b-h100``: ~12 ms a token, echo mode) and a gateway
with the given settings (its ``upstreams`` and ``port`` are replaced; a classifier
monitor's ``base_url: sim`` becomes the simulator's ``/classify``), sends one warm-up
stream, then N concurrent streams of a ``--words``-word answer, and prints the gateway
process's CPU seconds (user + system, psutil) over those streams per content chunk
received. The measurement behind the issue's "µs of gateway CPU per token at one stream".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

from loadtest.harness import free_port

_WORDS = "the quick brown fox jumps over the lazy dog and then it runs far away into the woods".split()


async def _stream(client: httpx.AsyncClient, url: str, prompt: str) -> int:
    chunks = 0
    body = {
        "model": "sim-llama-8b",
        "stream": True,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": prompt}],
    }
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                chunks += bool(choices and choices[0]["delta"].get("content"))
    return chunks


async def _measure(url: str, pid: int, streams: int, prompt: str) -> tuple[int, float, float]:
    async with httpx.AsyncClient(timeout=300) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if (await client.get(url + "/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        await _stream(client, url, prompt)  # warm-up
        process = psutil.Process(pid)
        before, started = process.cpu_times(), time.perf_counter()
        counts = await asyncio.gather(*(_stream(client, url, prompt) for _ in range(streams)))
        after, wall = process.cpu_times(), time.perf_counter() - started
    return sum(counts), (after.user + after.system) - (before.user + before.system), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="gateway settings YAML (monitors, streaming)")
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams (default 1)")
    parser.add_argument("--words", type=int, default=440, help="words in each answer (default 440)")
    args = parser.parse_args(argv)
    sim_port, gateway_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    for monitor in config.get("monitors", []):
        if monitor.get("base_url") == "sim":
            monitor["base_url"] = sim_url
    config.update(upstreams=[sim_url], host="127.0.0.1", port=gateway_port)
    with tempfile.TemporaryDirectory() as work:
        config_path = Path(work) / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        sim = subprocess.Popen(
            [sys.executable, "-m", "loadtest.sim", "--port", str(sim_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "warning", "serve", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
        )
        try:
            prompt = " ".join(_WORDS[i % len(_WORDS)] for i in range(args.words))
            chunks, cpu_s, wall_s = asyncio.run(
                _measure(f"http://127.0.0.1:{gateway_port}", gateway.pid, args.streams, prompt)
            )
        finally:
            for process in (gateway, sim):
                process.terminate()
                process.wait(timeout=30)
    print(
        f"{args.streams} stream(s): {chunks} chunks, gateway CPU {cpu_s:.2f} s = "
        f"{cpu_s / max(chunks, 1) * 1e6:,.0f} us per chunk, wall {wall_s:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
