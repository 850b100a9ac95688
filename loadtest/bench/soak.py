"""``taxgate bench soak``: minutes of mixed load with injected upstream faults; does the gateway hold?

On loopback: the simulator (``--fault-*`` answers fail on purpose), one gateway per
relay (``raw``: no monitors, the bytes-through path; ``monitored``: pii redaction on
output and a blocklist on input), and concurrent clients sending streamed and whole
requests, a share of which leave early. At the end: every answer by outcome (each
must be defined: see ``soak_outcomes``), in-flight requests left on each gateway
(its ``taxgate_in_flight_requests``, must be 0), requests counted against requests
sent (a client that leaves within milliseconds may not have been read: those may be
missing), the gateway's RSS growth after the warm-up, upstream and monitor error counts, and the
latency of the answers (percentiles as ``taxgate bench`` takes them). Exit status 1 when
anything failed; report.json, report.md and report.html in ``--out`` keep the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.progress import Progress

from loadtest.bench import echo, kit
from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.bench.soak_outcomes import (
    CLIENT_LEFT,
    CLIENT_LEFT_EARLY,
    OK,
    UNDEFINED,
    GatewayResult,
    classify_stream,
    classify_whole,
    parse_counters,
    rss_bytes,
    stream_finished,
    verdict,
)
from loadtest.bench.stats import summarize
from loadtest.bench.tables import Table
from loadtest.harness import free_port

TITLE = "taxgate bench soak"
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
    "monitored": {
        "monitors": [
            {"name": "pii", "stages": ["output"], "action": "redact"},
            {"name": "blocklist", "stages": ["input"], "action": "block", "keywords": [BLOCKED_WORD]},
        ]
    },
}
# Short gateway timeouts so stalls turn into answers within the run; the clients wait
# far longer, so a gateway that never answers shows as undefined, not as a client error.
GATEWAY_TIMEOUTS = {"first_byte_s": 4.0, "idle_s": 2.0, "client_header_s": 5.0, "client_body_s": 5.0}
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
    out: Path = Path("taxgate-soak")
    ready_timeout_s: float = 120.0


DEFAULTS = SoakOptions()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    parser.add_argument(
        "--duration", type=float, default=d.duration_s, metavar="S", help=f"seconds of load (default {d.duration_s:g})"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=d.warmup_s,
        metavar="S",
        help="seconds after which the gateways' RSS is taken as the start of "
        f"the growth measured (default {d.warmup_s:g})",
    )
    parser.add_argument(
        "--concurrency",
        type=kit.levels,
        default=(d.users,),
        metavar="N",
        help="concurrent clients, split over the gateways; each sends its "
        f"next request when the last ended (default {d.users}; one level)",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed for the request mix and the simulator (default {d.seed})"
    )
    parser.add_argument(
        "--stream-share",
        type=float,
        default=d.stream_share,
        metavar="SHARE",
        help=f"share of requests streamed (default {d.stream_share:g})",
    )
    parser.add_argument(
        "--disconnect",
        type=float,
        default=d.disconnect_share,
        metavar="SHARE",
        help="share of requests whose client leaves early: "
        "after the first chunk, or before a whole answer "
        f"(default {d.disconnect_share:g})",
    )
    for kind, what in (
        ("reset", "whose connection drops part-way"),
        ("stall", f"that stop for {STALL_S:g} s (past the gateway's timeouts)"),
        ("garbage", "that turn into bytes that are not the protocol"),
    ):
        parser.add_argument(
            f"--fault-{kind}",
            type=float,
            metavar="SHARE",
            default=getattr(d, f"fault_{kind}"),
            help=f"share of upstream answers {what} (default {getattr(d, f'fault_{kind}'):g})",
        )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=d.max_tokens,
        metavar="N",
        help=f"longest answer asked for (default {d.max_tokens})",
    )
    parser.add_argument(
        "--profile",
        dest="sim_profile",
        default=d.sim_profile,
        metavar="NAME",
        help=f"simulator latency profile (default {d.sim_profile})",
    )
    parser.add_argument(
        "--gateways",
        default=",".join(d.gateways),
        metavar="LIST",
        help="which gateways to soak, comma-separated: raw (no monitors), monitored (pii + blocklist) (default: both)",
    )
    parser.add_argument(
        "--max-rss-growth-mb",
        type=float,
        default=d.max_rss_growth_mb,
        metavar="MB",
        help=f"RSS growth after the warm-up that fails the soak (default {d.max_rss_growth_mb:g})",
    )
    kit.add_output_options(parser, out=str(d.out))


def options_from_args(args: argparse.Namespace) -> SoakOptions:
    gateways = tuple(name.strip() for name in args.gateways.split(",") if name.strip())
    unknown = [name for name in gateways if name not in GATEWAYS]
    if unknown or not gateways:
        raise ValueError(f"unknown gateway(s) {', '.join(unknown) or '(none)'}; known: {', '.join(GATEWAYS)}")
    if len(args.concurrency) != 1:
        raise ValueError("--concurrency takes one level for a soak, e.g. 16")
    users = args.concurrency[0]
    if users < len(gateways):
        raise ValueError(f"--concurrency {users} is fewer than the {len(gateways)} gateways")
    for name in ("stream_share", "disconnect", "fault_reset", "fault_stall", "fault_garbage"):
        if not 0 <= getattr(args, name) <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.duration <= args.warmup:
        raise ValueError(f"--duration {args.duration:g} must be longer than --warmup {args.warmup:g}")
    return SoakOptions(
        duration_s=args.duration,
        warmup_s=args.warmup,
        users=users,
        seed=args.seed,
        stream_share=args.stream_share,
        disconnect_share=args.disconnect,
        fault_reset=args.fault_reset,
        fault_stall=args.fault_stall,
        fault_garbage=args.fault_garbage,
        max_tokens=args.max_tokens,
        sim_profile=args.sim_profile,
        gateways=gateways,
        max_rss_growth_mb=args.max_rss_growth_mb,
        out=args.out.resolve(),
        ready_timeout_s=args.ready_timeout,
    )


# -- the load ---------------------------------------------------------------------------
async def one_request(client: httpx.AsyncClient, url: str, rng: random.Random, options: SoakOptions) -> str:
    stream = rng.random() < options.stream_share
    leave = rng.random() < options.disconnect_share
    body = {
        "model": MODEL,
        "stream": stream,
        "max_tokens": rng.randint(4, options.max_tokens),
        "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
    }
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
                response = await asyncio.wait_for(client.post(url, json=body), rng.uniform(0.02, 0.3))
            except TimeoutError:
                return CLIENT_LEFT_EARLY
        else:
            response = await client.post(url, json=body)
        return classify_whole(response.status_code, response.content)
    except httpx.TimeoutException:
        return f"{UNDEFINED}: no answer within {CLIENT_TIMEOUT_S:g} s"
    except httpx.TransportError as exc:
        return f"{UNDEFINED}: connection cut ({type(exc).__name__})"


async def user(
    client: httpx.AsyncClient,
    url: str,
    rng: random.Random,
    options: SoakOptions,
    deadline: float,
    tally: Counter[str],
    latencies: list[float],
) -> None:
    while time.monotonic() < deadline:
        sent = time.perf_counter()
        outcome = await one_request(client, url, rng, options)
        tally[outcome] += 1
        if outcome == OK:  # a whole answer; a client that left or a fault is no latency
            latencies.append(time.perf_counter() - sent)


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


async def drive(
    urls: dict[str, str], pids: dict[str, int], options: SoakOptions, progress: Progress
) -> tuple[dict[str, Counter[str]], dict[str, RssWatch], dict[str, list[float]]]:
    tallies = {name: Counter[str]() for name in urls}
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    watches = {name: RssWatch(pid) for name, pid in pids.items()}
    started = time.monotonic()
    deadline = started + options.duration_s
    limits = httpx.Limits(max_connections=options.users * 2, max_keepalive_connections=options.users * 2)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits, trust_env=False) as client:
        names = list(urls)
        users = [
            asyncio.create_task(
                user(
                    client,
                    urls[names[i % len(names)]],
                    random.Random(f"{options.seed}:user{i}"),
                    options,
                    deadline,
                    tallies[names[i % len(names)]],
                    latencies[names[i % len(names)]],
                )
            )
            for i in range(options.users)
        ]
        task = progress.add_task("soak", total=options.duration_s)
        while not all(u.done() for u in users):
            elapsed = time.monotonic() - started
            for watch in watches.values():
                watch.sample(elapsed >= options.warmup_s)
            sent = sum(sum(t.values()) for t in tallies.values())
            bad = sum(n for t in tallies.values() for o, n in t.items() if o.startswith(UNDEFINED))
            phase = "load" if elapsed < options.duration_s else "finishing"
            progress.update(
                task,
                completed=min(elapsed, options.duration_s),
                description=f"{phase}: {sent} requests, {bad} undefined",
            )
            await asyncio.wait(users, timeout=RSS_EVERY_S)
        await asyncio.gather(*users)  # a bug in the driver must not pass as a result
    return tallies, watches, latencies


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
    faults = ("--fault-reset", str(options.fault_reset), "--fault-stall", str(options.fault_stall))
    faults += ("--fault-garbage", str(options.fault_garbage), "--fault-stall-s", str(STALL_S))
    group.add(
        echo.simulator(
            sim_port,
            profile=options.sim_profile,
            model=MODEL,
            seed=options.seed,
            log=work / "logs" / "simulator.log",
            extra=faults,
        )
    )
    urls = {}
    for name in options.gateways:
        port = free_port(taken=taken)
        config = {
            "upstreams": [upstream],
            "host": LOOPBACK,
            "port": port,
            "timeouts": GATEWAY_TIMEOUTS,
            "audit": {"path": str(work / f"audit-{name}.db")},
            **GATEWAYS[name],
        }
        path = work / "configs" / f"gateway-{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        base = f"http://{LOOPBACK}:{port}"
        group.add(
            ManagedProcess(
                f"gateway {name}",
                [sys.executable, "-m", "gateway", "--log-level", "warning", "serve", "--config", str(path)],
                work / "logs" / f"gateway-{name}.log",
                base + "/ready",
                base,
            )
        )
        urls[name] = base
    return upstream, urls


async def soak(options: SoakOptions, console: Console) -> tuple[list[GatewayResult], dict, dict[str, list[float]]]:
    with ProcessGroup() as group:
        upstream, urls = start_servers(options, group)
        with console.status(f"starting the simulator and {len(urls)} gateway(s)..."):
            group.start_all()
            await asyncio.to_thread(group.wait_ready, options.ready_timeout_s)
        pids = {name: group.processes[i + 1].proc.pid for i, name in enumerate(urls)}
        with kit.progress_bar(console, counted=False) as progress:
            tallies, watches, latencies = await drive(urls, pids, options, progress)
        group.check_alive()
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            results = []
            for name, url in urls.items():
                counters = await settle(client, url)
                watches[name].sample(True)
                watch = watches[name]
                results.append(GatewayResult(name, dict(tallies[name]), counters, watch.start, watch.end, watch.peak))
            faults = injected_faults((await client.get(upstream + "/metrics")).text)
    return results, faults, latencies


def outcome_table(result: GatewayResult) -> Table:
    rows = [(outcome, str(count)) for outcome, count in sorted(result.outcomes.items(), key=lambda item: -item[1])]
    return Table(
        f"gateway {result.name}: {result.sent} requests",
        ("outcome", "requests"),
        rows,
        "Each answer must be defined: a completion, an OpenAI-shaped error, or a stream ending in "
        "[DONE] or one error event.",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def held_table(results: list[GatewayResult], latencies: dict[str, list[float]]) -> Table:
    mb = 2**20
    rows = []
    for r in results:
        c = r.counters
        p = summarize(latencies.get(r.name, []))
        rows.append(
            (
                r.name,
                str(r.sent),
                str(r.undefined),
                f"{c.in_flight:g}",
                f"{c.requests_total:g}",
                f"{r.rss_start / mb:.1f} -> {r.rss_end / mb:.1f} ({r.rss_growth / mb:+.1f}, peak "
                f"{r.rss_peak / mb:.1f})",
                *(_ms(p and p.get(q)) for q in ("p50", "p95", "p99")),
                _counts(c.upstream_errors),
                _counts(c.monitor_errors),
                f"{c.client_disconnects:g}",
            )
        )
    return Table(
        "Did each gateway hold?",
        (
            "gateway",
            "requests",
            "undefined",
            "in flight at the end",
            "counted by the gateway",
            "RSS MB after warm-up -> end",
            "E2E p50 ms",
            "E2E p95 ms",
            "E2E p99 ms",
            "upstream errors",
            "monitor errors",
            "client disconnects",
        ),
        rows,
        "E2E: whole answers (outcome ok) only, every request of the run pooled, percentiles as "
        "`taxgate bench` takes them.",
    )


def _counts(counter) -> str:
    items = [f"{key} {value:g}" for key, value in sorted(counter.items()) if value]
    return ", ".join(items) or "none"


def report_payload(
    results: list[GatewayResult],
    faults: dict,
    latencies: dict[str, list[float]],
    options: SoakOptions,
    wall_s: float,
    failures: list[str],
) -> dict:
    def gateway(r: GatewayResult) -> dict:
        p = summarize(latencies.get(r.name, []))
        return {
            "name": r.name,
            "requests": r.sent,
            "outcomes": r.outcomes,
            "undefined": r.undefined,
            "in_flight_end": r.counters.in_flight,
            "requests_counted": r.counters.requests_total,
            "status_counted": dict(r.counters.requests),
            "upstream_errors": dict(r.counters.upstream_errors),
            "monitor_errors": dict(r.counters.monitor_errors),
            "client_disconnects": r.counters.client_disconnects,
            "rss_start_mb": round(r.rss_start / 2**20, 1),
            "rss_end_mb": round(r.rss_end / 2**20, 1),
            "rss_peak_mb": round(r.rss_peak / 2**20, 1),
            "rss_growth_mb": round(r.rss_growth / 2**20, 1),
            "e2e_ms": None if p is None else {k: v * 1000 for k, v in p.as_dict().items()},
        }

    return {
        "options": {**asdict(options), "out": str(options.out)},
        "command": kit.command_line(),
        "wall_s": round(wall_s, 1),
        "injected_faults": faults,
        "gateways": [gateway(r) for r in results],
        "failures": failures,
    }


def _run(args: argparse.Namespace, console: Console) -> int:
    options = options_from_args(args)
    kit.quiet_logs(args.verbose)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results, faults, latencies = asyncio.run(soak(options, console))
    failures = [f for result in results for f in verdict(result, options.max_rss_growth_mb)]
    tables = [held_table(results, latencies), *(outcome_table(r) for r in results)]
    payload = report_payload(results, faults, latencies, options, time.time() - started, failures)
    out = kit.summary_console()
    for table in tables:
        kit.print_table(out, table)
    out.print(f"injected upstream faults: {_counts(faults)}")
    from loadtest.bench.report import write_table_report

    meta = {
        "date": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "command": payload["command"],
        "wall_s": payload["wall_s"],
    }
    head = [
        f"{'FAILED' if failures else 'held'}; injected upstream faults: {_counts(faults)}",
        *(f"FAIL {failure}" for failure in failures),
    ]
    write_table_report(options.out, TITLE, payload, tables, [*head, *kit.meta_lines(meta)])
    for failure in failures:
        out.print(f"[red]FAIL[/] {failure}")
    out.print(
        f"{'FAILED' if failures else 'held'}: {options.out / 'report.html'} (also report.md, "
        f"report.json; server logs in {options.out / 'logs'})"
    )
    return 1 if failures else 0


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    return kit.guarded(TITLE, console, lambda: _run(args, console))
