"""``taxgate soak``: minutes of mixed load with injected upstream faults; does the gateway hold?

On loopback: the simulator (``--fault-*`` answers fail on purpose), one gateway per
relay (``raw``: no monitors, the bytes-through path; ``monitored``: pii redaction on
output and a blocklist on input), and concurrent clients sending streamed and whole
requests, a share of which leave early. At the end: every answer by outcome (each
must be defined: see ``soak_outcomes``), in-flight requests left on each gateway
(its ``taxgate_in_flight_requests``, must be 0), requests counted against requests
sent (a client that leaves within milliseconds may not have been read: those may be
missing), the gateway's RSS growth after the warm-up, upstream and monitor error counts.
Exit status 1 when anything failed; ``soak.json`` in ``--out`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.harness import free_port
from loadtest.soak_outcomes import (
    CLIENT_LEFT,
    CLIENT_LEFT_EARLY,
    UNDEFINED,
    GatewayResult,
    classify_stream,
    classify_whole,
    parse_counters,
    rss_bytes,
    stream_finished,
    verdict,
)

LOOPBACK = "127.0.0.1"
MODEL = "sim-soak"
BLOCKED_WORD = "forbidden-topic"
PROMPTS = (
    "Summarise the plot of a film about a lighthouse keeper.",
    "Write three short sentences about rivers and mountains.",
    "My email is jane.doe@example.com and my card is 4111 1111 1111 1111, repeat both.",
    f"Tell me everything about {BLOCKED_WORD} please.",
    "List some quiet evening activities for a rainy day in the garden.",
)
GATEWAYS = {
    "raw": {},
    "monitored": {"monitors": [
        {"name": "pii", "stages": ["output"], "action": "redact"},
        {"name": "blocklist", "stages": ["input"], "action": "block",
         "keywords": [BLOCKED_WORD]},
    ]},
}
# Short gateway timeouts so stalls turn into answers within the run; the clients wait
# far longer, so a gateway that never answers shows as undefined, not as a client error.
GATEWAY_TIMEOUTS = {"first_byte_s": 4.0, "idle_s": 2.0, "client_header_s": 5.0,
                    "client_body_s": 5.0}
STALL_S = 8.0
CLIENT_TIMEOUT_S = 30.0
RSS_EVERY_S = 2.0


@dataclass(frozen=True)
class SoakOptions:
    duration_s: float = 300.0
    warmup_s: float = 30.0
    users: int = 16
    seed: int = 0
    stream_share: float = 0.7
    disconnect_share: float = 0.05
    fault_reset: float = 0.02
    fault_stall: float = 0.02
    fault_garbage: float = 0.02
    max_tokens: int = 48
    sim_profile: str = "llama-8b-h100"
    gateways: tuple[str, ...] = ("raw", "monitored")
    max_rss_growth_mb: float = 50.0
    out: Path = Path("soak-results")


DEFAULTS = SoakOptions()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    parser.add_argument("--duration", type=float, default=d.duration_s, metavar="S",
                        help=f"seconds of load (default {d.duration_s:g})")
    parser.add_argument("--warmup", type=float, default=d.warmup_s, metavar="S",
                        help="seconds after which the gateways' RSS is taken as the start of "
                             f"the growth measured (default {d.warmup_s:g})")
    parser.add_argument("--users", type=int, default=d.users,
                        help="concurrent clients, split over the gateways; each sends its "
                             f"next request when the last ended (default {d.users})")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"seed for the request mix and the simulator (default {d.seed})")
    parser.add_argument("--stream-share", type=float, default=d.stream_share, metavar="SHARE",
                        help=f"share of requests streamed (default {d.stream_share:g})")
    parser.add_argument("--disconnect", type=float, default=d.disconnect_share,
                        metavar="SHARE", help="share of requests whose client leaves early: "
                        "after the first chunk, or before a whole answer "
                        f"(default {d.disconnect_share:g})")
    for kind, what in (("reset", "whose connection drops part-way"),
                       ("stall", f"that stop for {STALL_S:g} s (past the gateway's timeouts)"),
                       ("garbage", "that turn into bytes that are not the protocol")):
        parser.add_argument(f"--fault-{kind}", type=float, metavar="SHARE",
                            default=getattr(d, f"fault_{kind}"),
                            help=f"share of upstream answers {what} (default "
                                 f"{getattr(d, f'fault_{kind}'):g})")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, metavar="N",
                        help=f"longest answer asked for (default {d.max_tokens})")
    parser.add_argument("--sim-profile", default=d.sim_profile, metavar="NAME",
                        help=f"simulator latency profile (default {d.sim_profile})")
    parser.add_argument("--gateways", default=",".join(d.gateways), metavar="LIST",
                        help="which gateways to soak, comma-separated: raw (no monitors), "
                             "monitored (pii + blocklist) (default: both)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=d.max_rss_growth_mb,
                        metavar="MB", help="RSS growth after the warm-up that fails the soak "
                                           f"(default {d.max_rss_growth_mb:g})")
    parser.add_argument("--out", type=Path, default=d.out, metavar="DIR",
                        help=f"folder for soak.json, configs and server logs (default "
                             f"./{d.out})")


def options_from_args(args: argparse.Namespace) -> SoakOptions:
    gateways = tuple(name.strip() for name in args.gateways.split(",") if name.strip())
    unknown = [name for name in gateways if name not in GATEWAYS]
    if unknown or not gateways:
        raise ValueError(f"unknown gateway(s) {', '.join(unknown) or '(none)'}; "
                         f"known: {', '.join(GATEWAYS)}")
    if args.users < len(gateways):
        raise ValueError(f"--users {args.users} is fewer than the {len(gateways)} gateways")
    for name in ("stream_share", "disconnect", "fault_reset", "fault_stall", "fault_garbage"):
        if not 0 <= getattr(args, name) <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.duration <= args.warmup:
        raise ValueError(f"--duration {args.duration:g} must be longer than --warmup "
                         f"{args.warmup:g}")
    return SoakOptions(
        duration_s=args.duration, warmup_s=args.warmup, users=args.users, seed=args.seed,
        stream_share=args.stream_share, disconnect_share=args.disconnect,
        fault_reset=args.fault_reset, fault_stall=args.fault_stall,
        fault_garbage=args.fault_garbage, max_tokens=args.max_tokens,
        sim_profile=args.sim_profile, gateways=gateways,
        max_rss_growth_mb=args.max_rss_growth_mb, out=args.out.resolve())


# -- the load ---------------------------------------------------------------------------
async def one_request(client: httpx.AsyncClient, url: str, rng: random.Random,
                      options: SoakOptions) -> str:
    stream = rng.random() < options.stream_share
    leave = rng.random() < options.disconnect_share
    body = {"model": MODEL, "stream": stream, "max_tokens": rng.randint(4, options.max_tokens),
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}]}
    url += "/v1/chat/completions"
    try:
        if stream:
            async with client.stream("POST", url, json=body) as response:
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if leave and response.status_code == 200 and not stream_finished(data):
                        return CLIENT_LEFT  # leaving the block closes the connection
                return classify_stream(response.status_code, bytes(data))
        if leave:
            try:
                response = await asyncio.wait_for(client.post(url, json=body),
                                                  rng.uniform(0.02, 0.3))
            except TimeoutError:
                return CLIENT_LEFT_EARLY
        else:
            response = await client.post(url, json=body)
        return classify_whole(response.status_code, response.content)
    except httpx.TimeoutException:
        return f"{UNDEFINED}: no answer within {CLIENT_TIMEOUT_S:g} s"
    except httpx.TransportError as exc:
        return f"{UNDEFINED}: connection cut ({type(exc).__name__})"


async def user(client: httpx.AsyncClient, url: str, rng: random.Random, options: SoakOptions,
               deadline: float, tally: Counter[str]) -> None:
    while time.monotonic() < deadline:
        tally[await one_request(client, url, rng, options)] += 1


def read_rss(pid: int) -> int:
    return rss_bytes(Path(f"/proc/{pid}/status").read_text())


class RssWatch:
    """RSS samples of one process: the first after the warm-up, the peak, the last."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = 0
        self.peak = 0
        self.end = 0

    def sample(self, after_warmup: bool) -> None:
        rss = read_rss(self.pid)
        self.peak = max(self.peak, rss)
        self.end = rss
        if after_warmup and not self.start:
            self.start = rss


async def drive(urls: dict[str, str], pids: dict[str, int], options: SoakOptions,
                progress: Progress) -> tuple[dict[str, Counter[str]], dict[str, RssWatch]]:
    tallies = {name: Counter[str]() for name in urls}
    watches = {name: RssWatch(pid) for name, pid in pids.items()}
    started = time.monotonic()
    deadline = started + options.duration_s
    limits = httpx.Limits(max_connections=options.users * 2,
                          max_keepalive_connections=options.users * 2)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits,
                                 trust_env=False) as client:
        names = list(urls)
        users = [asyncio.create_task(user(
            client, urls[names[i % len(names)]], random.Random(f"{options.seed}:user{i}"),
            options, deadline, tallies[names[i % len(names)]]))
            for i in range(options.users)]
        task = progress.add_task("soak", total=options.duration_s)
        while not all(u.done() for u in users):
            elapsed = time.monotonic() - started
            for watch in watches.values():
                watch.sample(elapsed >= options.warmup_s)
            sent = sum(sum(t.values()) for t in tallies.values())
            bad = sum(n for t in tallies.values() for o, n in t.items()
                      if o.startswith(UNDEFINED))
            phase = "load" if elapsed < options.duration_s else "finishing"
            progress.update(task, completed=min(elapsed, options.duration_s),
                            description=f"{phase}: {sent} requests, {bad} undefined")
            await asyncio.wait(users, timeout=RSS_EVERY_S)
        await asyncio.gather(*users)  # a bug in the driver must not pass as a result
    return tallies, watches


async def settle(client: httpx.AsyncClient, url: str, timeout_s: float = 10.0):
    """The gateway's counters once nothing is in flight (or at the deadline): a stream is
    counted just after its last byte left, so the gauge can lag the client a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        counters = parse_counters((await client.get(url + "/metrics")).text)
        if counters.in_flight == 0 or time.monotonic() > deadline:
            return counters
        await asyncio.sleep(0.2)


def injected_faults(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("sim_injected_faults_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = float(line.rsplit(" ", 1)[1])
    return out


# -- the run ----------------------------------------------------------------------------
def start_servers(options: SoakOptions, group: ProcessGroup) -> tuple[str, dict[str, str]]:
    work = options.out
    taken: set[int] = set()
    sim_port = free_port(taken=taken)
    upstream = f"http://{LOOPBACK}:{sim_port}"
    group.add(ManagedProcess(
        "simulator",
        [sys.executable, "-m", "loadtest.sim", "--host", LOOPBACK, "--port", str(sim_port),
         "--profile", options.sim_profile, "--output-mode", "echo", "--model", MODEL,
         "--seed", str(options.seed), "--log-level", "warning",
         "--fault-reset", str(options.fault_reset), "--fault-stall", str(options.fault_stall),
         "--fault-garbage", str(options.fault_garbage), "--fault-stall-s", str(STALL_S)],
        work / "logs" / "simulator.log", upstream + "/health", upstream))
    urls = {}
    for name in options.gateways:
        port = free_port(taken=taken)
        config = {"upstreams": [upstream], "host": LOOPBACK, "port": port,
                  "timeouts": GATEWAY_TIMEOUTS,
                  "audit": {"path": str(work / f"audit-{name}.db")}, **GATEWAYS[name]}
        path = work / "configs" / f"gateway-{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        base = f"http://{LOOPBACK}:{port}"
        group.add(ManagedProcess(
            f"gateway {name}", [sys.executable, "-m", "gateway", "--log-level", "warning",
                                "serve", "--config", str(path)],
            work / "logs" / f"gateway-{name}.log", base + "/ready", base))
        urls[name] = base
    return upstream, urls


async def soak(options: SoakOptions, console: Console) -> tuple[list[GatewayResult], dict]:
    with ProcessGroup() as group:
        upstream, urls = start_servers(options, group)
        with console.status(f"starting the simulator and {len(urls)} gateway(s)..."):
            group.start_all()
            await asyncio.to_thread(group.wait_ready, 120.0)
        pids = {name: group.processes[i + 1].proc.pid for i, name in enumerate(urls)}
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            tallies, watches = await drive(urls, pids, options, progress)
        group.check_alive()
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            results = []
            for name, url in urls.items():
                counters = await settle(client, url)
                watches[name].sample(True)
                watch = watches[name]
                results.append(GatewayResult(name, dict(tallies[name]), counters,
                                             watch.start, watch.end, watch.peak))
            faults = injected_faults((await client.get(upstream + "/metrics")).text)
    return results, faults


def print_report(results: list[GatewayResult], faults: dict, options: SoakOptions,
                 console: Console) -> list[str]:
    failures: list[str] = []
    for result in results:
        table = Table(title=f"gateway {result.name}: {result.sent} requests",
                      title_justify="left")
        table.add_column("outcome")
        table.add_column("requests", justify="right")
        for outcome, count in sorted(result.outcomes.items(), key=lambda item: -item[1]):
            style = "red" if outcome.startswith(UNDEFINED) else None
            table.add_row(outcome, str(count), style=style)
        console.print(table)
        mb = 2**20
        c = result.counters
        console.print(
            f"  in flight at the end: {c.in_flight:g}   counted by the gateway: "
            f"{c.requests_total:g}   RSS: {result.rss_start / mb:.1f} -> "
            f"{result.rss_end / mb:.1f} MB (growth {result.rss_growth / mb:+.1f}, peak "
            f"{result.rss_peak / mb:.1f})")
        console.print(f"  upstream errors: {_counts(c.upstream_errors)}   monitor errors: "
                      f"{_counts(c.monitor_errors)}   client disconnects: "
                      f"{c.client_disconnects:g}")
        failures += verdict(result, options.max_rss_growth_mb)
    console.print(f"injected upstream faults: {_counts(faults)}")
    return failures


def _counts(counter) -> str:
    items = [f"{key} {value:g}" for key, value in sorted(counter.items()) if value]
    return ", ".join(items) or "none"


def run(args: argparse.Namespace) -> int:
    console = Console()
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"taxgate soak: {exc}", file=sys.stderr)
        return 2
    # One INFO line per request from httpx would bury the progress bar.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results, faults = asyncio.run(soak(options, console))
    failures = print_report(results, faults, options, console)
    report = {
        "options": {**asdict(options), "out": str(options.out)},
        "wall_s": round(time.time() - started, 1),
        "injected_faults": faults,
        "gateways": [{"name": r.name, "requests": r.sent, "outcomes": r.outcomes,
                      "undefined": r.undefined, "in_flight_end": r.counters.in_flight,
                      "requests_counted": r.counters.requests_total,
                      "status_counted": dict(r.counters.requests),
                      "upstream_errors": dict(r.counters.upstream_errors),
                      "monitor_errors": dict(r.counters.monitor_errors),
                      "client_disconnects": r.counters.client_disconnects,
                      "rss_start_mb": round(r.rss_start / 2**20, 1),
                      "rss_end_mb": round(r.rss_end / 2**20, 1),
                      "rss_peak_mb": round(r.rss_peak / 2**20, 1),
                      "rss_growth_mb": round(r.rss_growth / 2**20, 1)} for r in results],
        "failures": failures,
    }
    (options.out / "soak.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    for failure in failures:
        console.print(f"[red]FAIL[/] {failure}")
    console.print(f"{'FAILED' if failures else 'held'}: {options.out / 'soak.json'} "
                  f"(server logs in {options.out / 'logs'})")
    return 1 if failures else 0
