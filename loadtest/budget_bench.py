"""What a tax budget buys and what it costs: a slow judge driven past its capacity.

    python -m loadtest.budget_bench                       # levels 4,8,16,32, ~2 minutes
    python -m loadtest.budget_bench --levels 32 --round-s 8

Starts a slow judge (loadtest/slow_judge.py: ``--judge-latency-ms`` per answer,
``--judge-slots`` at once, so slots / latency checks a second), the simulator
(``--profile instant``: the model costs ~nothing, so what is measured is the monitor), and
two gateways with the judge as an input monitor (``on_error: open``):

* ``no-budget``: ``degrade: never`` (the judge is waited for, up to ``timeout_ms``);
* ``budget``: ``budgets: {input: --budget-ms}`` and ``degrade: skip``.

At each load level, closed-loop clients stream chat completions for ``--round-s`` to the
simulator directly and through each gateway (interleaved), and the bench reports TTFT and
its tax over direct, how busy the judge was, and coverage: the share of requests the judge
checked in time (``taxgate_monitor_checks_in_time_total`` against
``taxgate_monitor_skipped_total``). ``accounted`` checks that every request is one of: in
time, skipped, or a counted monitor error. Writes ``results.json``, ``report.md`` and
``budget.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.harness import free_port

LOOPBACK = "127.0.0.1"
MODEL = "sim"
PROMPT = "Tell me a short story about a lighthouse keeper."
SCENARIOS = ("direct", "no-budget", "budget")


@dataclass
class Round:
    scenario: str
    clients: int
    requests: int
    failed: int
    rps: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    e2e_p50_ms: float
    e2e_p95_ms: float
    judge_per_s: float = 0.0
    judge_busy: float = 0.0  # share of the judge's capacity used
    in_time: float = 0.0
    skipped_predicted: float = 0.0
    skipped_late: float = 0.0
    monitor_errors: float = 0.0
    ttft_tax_p50_ms: float = 0.0
    ttft_tax_p95_ms: float = 0.0

    @property
    def coverage(self) -> float:
        checked = self.in_time + self.skipped_predicted + self.skipped_late + self.monitor_errors
        return self.in_time / checked if checked else 0.0

    @property
    def accounted(self) -> float:
        """Share of the requests the gateway answered that its judge metrics account for."""
        counted = self.in_time + self.skipped_predicted + self.skipped_late + self.monitor_errors
        return counted / self.requests if self.requests else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(base: str, clients: int, seconds: float) -> tuple[list[float], list[float], int]:
    """``clients`` loops, each sending the next request when the last ends; TTFT and E2E
    (seconds) of the successful ones, and how many failed."""
    ttfts: list[float] = []
    e2es: list[float] = []
    failed = 0
    body = {"model": MODEL, "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": PROMPT}]}
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failed
        while time.perf_counter() < end:
            sent = time.perf_counter()
            first = None
            try:
                async with http.stream("POST", base + "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        failed += 1
                        continue
                    async for line in r.aiter_lines():
                        if first is None and '"content":"' in line:
                            first = time.perf_counter()
            except httpx.HTTPError:
                failed += 1
                continue
            done = time.perf_counter()
            ttfts.append((first or done) - sent)
            e2es.append(done - sent)

    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return ttfts, e2es, failed


def scrape(base: str) -> dict[str, float]:
    """The judge monitor's counters from a gateway's /metrics, summed by what we need."""
    text = httpx.get(base + "/metrics", timeout=10).text
    found = {"in_time": 0.0, "predicted": 0.0, "late": 0.0, "errors": 0.0}
    for line in text.splitlines():
        if not line.startswith("taxgate_monitor_") or 'monitor="judge"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("taxgate_monitor_checks_in_time_total"):
            found["in_time"] += float(value)
        elif name.startswith("taxgate_monitor_skipped_total"):
            found["predicted" if 'reason="predicted"' in name else "late"] += float(value)
        elif name.startswith("taxgate_monitor_errors_total"):
            found["errors"] += float(value)
    return found


def judge_served(base: str) -> float:
    return float(httpx.get(base + "/stats", timeout=10).json()["served"])


def gateway_config(port: int, upstream: str, judge: str, args: argparse.Namespace,
                   budget: bool, work: Path, name: str) -> Path:
    monitor = {"name": "judge", "id": "judge", "stages": ["input"], "base_url": judge,
               "model": "guard", "timeout_ms": args.timeout_ms, "on_error": "open",
               "degrade": "skip" if budget else "never"}
    config = {"host": LOOPBACK, "port": port, "upstreams": [upstream], "monitors": [monitor],
              "audit": {"path": str(work / f"audit-{name}.db")}}
    if budget:
        config["budgets"] = {"input": args.budget_ms}
    path = work / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def start_servers(group: ProcessGroup, args: argparse.Namespace, work: Path) -> dict[str, str]:
    taken: set[int] = set()
    judge_port, sim_port = free_port(taken=taken), free_port(taken=taken)
    judge = f"http://{LOOPBACK}:{judge_port}"
    sim = f"http://{LOOPBACK}:{sim_port}"
    group.add(ManagedProcess("slow judge", [
        sys.executable, "-m", "loadtest.slow_judge", "--port", str(judge_port),
        "--latency-ms", str(args.judge_latency_ms), "--slots", str(args.judge_slots)],
        work / "judge.log", judge + "/health", judge))
    group.add(ManagedProcess("simulator", [
        sys.executable, "-m", "loadtest.sim", "--host", LOOPBACK, "--port", str(sim_port),
        "--profile", "instant", "--model", MODEL, "--log-level", "warning"],
        work / "sim.log", sim + "/health", sim))
    urls = {"direct": sim, "judge": judge}
    for name, budget in (("no-budget", False), ("budget", True)):
        port = free_port(taken=taken)
        base = f"http://{LOOPBACK}:{port}"
        config = gateway_config(port, sim, judge, args, budget, work, name)
        group.add(ManagedProcess(f"gateway {name}", [
            sys.executable, "-m", "gateway", "--log-level", "warning", "serve",
            "--config", str(config)], work / f"gateway-{name}.log", base + "/ready", base))
        urls[name] = base
    group.start_all()
    group.wait_ready(60)
    return urls


def measure(urls: dict[str, str], scenario: str, clients: int, args: argparse.Namespace,
            capacity: float) -> Round:
    base = urls[scenario]
    before = scrape(base) if scenario != "direct" else None
    served = judge_served(urls["judge"])
    started = time.perf_counter()
    ttfts, e2es, failed = asyncio.run(closed_loop(base, clients, args.round_s))
    # Closed loop: the last requests end up to one latency after round_s.
    elapsed = time.perf_counter() - started
    time.sleep(0.3)  # a late check's verdict lands after its request: let the counters settle
    judged = (judge_served(urls["judge"]) - served) / elapsed
    ms = [v * 1000 for v in ttfts]
    e2e = [v * 1000 for v in e2es]
    row = Round(scenario, clients, len(ttfts), failed, len(ttfts) / elapsed,
                percentile(ms, 0.5), percentile(ms, 0.95), percentile(e2e, 0.5),
                percentile(e2e, 0.95), judged, judged / capacity)
    if before is not None:
        after = scrape(base)
        row.in_time = after["in_time"] - before["in_time"]
        row.skipped_predicted = after["predicted"] - before["predicted"]
        row.skipped_late = after["late"] - before["late"]
        row.monitor_errors = after["errors"] - before["errors"]
    return row


def run(args: argparse.Namespace) -> list[Round]:
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    capacity = args.judge_slots / (args.judge_latency_ms / 1000.0)
    rows: list[Round] = []
    with ProcessGroup() as group:
        print(f"starting judge ({capacity:.0f} checks/s), simulator, 2 gateways ...", flush=True)
        urls = start_servers(group, args, work)
        for name in SCENARIOS:  # connections, imports, first judge answers
            asyncio.run(closed_loop(urls[name], 4, args.warmup_s))
        total = len(args.levels) * len(SCENARIOS)
        for level_index, clients in enumerate(args.levels):
            # Rotate the starting scenario so none is always first after a level change.
            order = SCENARIOS[level_index % 3:] + SCENARIOS[:level_index % 3]
            for name in order:
                group.check_alive()
                row = measure(urls, name, clients, args, capacity)
                rows.append(row)
                print(f"[{len(rows)}/{total}] {name:>9} @ {clients:>2} clients: "
                      f"{row.rps:6.0f} req/s, TTFT p50 {row.ttft_p50_ms:6.1f} ms "
                      f"p95 {row.ttft_p95_ms:6.1f} ms, judge {row.judge_per_s:5.1f}/s"
                      + (f", coverage {row.coverage:.0%}" if name != "direct" else ""),
                      flush=True)
    direct = {r.clients: r for r in rows if r.scenario == "direct"}
    for row in rows:
        row.ttft_tax_p50_ms = row.ttft_p50_ms - direct[row.clients].ttft_p50_ms
        row.ttft_tax_p95_ms = row.ttft_p95_ms - direct[row.clients].ttft_p95_ms
    return rows


def table(rows: list[Round]) -> str:
    lines = [("| scenario | clients | req/s | TTFT p50 | TTFT p95 | TTFT tax p50 | TTFT tax p95 "
              "| E2E p95 | judge checks/s | judge busy | in time | skipped predicted | skipped late "
              "| monitor errors | coverage | accounted |"),
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in sorted(rows, key=lambda r: (r.clients, SCENARIOS.index(r.scenario))):
        gateway = r.scenario != "direct"
        lines.append(
            f"| {r.scenario} | {r.clients} | {r.rps:.0f} | {r.ttft_p50_ms:.1f} ms | "
            f"{r.ttft_p95_ms:.1f} ms | {r.ttft_tax_p50_ms:+.1f} ms | {r.ttft_tax_p95_ms:+.1f} ms | "
            f"{r.e2e_p95_ms:.1f} ms | {r.judge_per_s:.1f} | {r.judge_busy:.0%} | "
            + (f"{r.in_time:.0f} | {r.skipped_predicted:.0f} | {r.skipped_late:.0f} | "
               f"{r.monitor_errors:.0f} | {r.coverage:.1%} | {r.accounted:.1%} |" if gateway
               else "– | – | – | – | – | – |"))
    return "\n".join(lines)


def headline(rows: list[Round], args: argparse.Namespace) -> str:
    top = max(args.levels)
    at = {r.scenario: r for r in rows if r.clients == top}
    budget, plain = at["budget"], at["no-budget"]
    return (f"At {top} clients, judge capacity {args.judge_slots / args.judge_latency_ms * 1000:.0f}"
            f" checks/s: with budgets.input={args.budget_ms:g} ms TTFT p50 "
            f"{budget.ttft_p50_ms:.0f} ms / p95 {budget.ttft_p95_ms:.0f} ms, judge "
            f"{budget.judge_busy:.0%} busy, coverage {budget.coverage:.1%}, "
            f"{budget.skipped_predicted + budget.skipped_late:.0f} skips counted "
            f"(accounted {budget.accounted:.1%}); without: p50 {plain.ttft_p50_ms:.0f} ms / "
            f"p95 {plain.ttft_p95_ms:.0f} ms, judge {plain.judge_busy:.0%} busy, coverage "
            f"{plain.coverage:.1%}.")


def plot(rows: list[Round], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tax, cover) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("no-budget", "budget"):
        mine = sorted((r for r in rows if r.scenario == name), key=lambda r: r.clients)
        levels = [r.clients for r in mine]
        tax.plot(levels, [r.ttft_tax_p50_ms for r in mine], marker="o", label=f"{name} p50")
        tax.plot(levels, [r.ttft_tax_p95_ms for r in mine], marker="o", linestyle="--",
                 label=f"{name} p95")
        cover.plot(levels, [r.coverage * 100 for r in mine], marker="o", label=f"{name} coverage")
        cover.plot(levels, [r.judge_busy * 100 for r in mine], marker="x", linestyle=":",
                   label=f"{name} judge busy")
    tax.set(xlabel="concurrent clients", ylabel="TTFT tax (ms)", title="TTFT tax vs load")
    cover.set(xlabel="concurrent clients", ylabel="%", title="Coverage and judge use vs load",
              ylim=(0, 105))
    for axis in (tax, cover):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.budget_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")],
                        default=[4, 8, 16, 32],
                        help="concurrent closed-loop clients per level, comma-separated "
                             "(default 4,8,16,32)")
    parser.add_argument("--round-s", type=float, default=8.0,
                        help="seconds each scenario is driven at each level (default 8)")
    parser.add_argument("--warmup-s", type=float, default=2.0,
                        help="seconds of light traffic to each scenario first (default 2)")
    parser.add_argument("--budget-ms", type=float, default=150.0,
                        help="budgets.input of the 'budget' gateway (default 150)")
    parser.add_argument("--timeout-ms", type=float, default=1000.0,
                        help="the judge monitor's timeout_ms in both gateways (default 1000)")
    parser.add_argument("--judge-latency-ms", type=float, default=100.0,
                        help="time the slow judge takes per answer (default 100)")
    parser.add_argument("--judge-slots", type=int, default=4,
                        help="answers the judge serves at once (default 4: 40 checks/s "
                             "at 100 ms)")
    parser.add_argument("--out", default="runs/budget-bench",
                        help="directory for results.json, report.md, budget.png and the "
                             "servers' logs (default runs/budget-bench)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = run(args)
    out = Path(args.out)
    text = headline(rows, args)
    report = f"# Tax budget bench\n\n{text}\n\n{table(rows)}\n"
    (out / "report.md").write_text(report, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "rows": [asdict(r) | {"coverage": r.coverage,
                                                    "accounted": r.accounted} for r in rows]},
        indent=2), encoding="utf-8")
    plot(rows, out / "budget.png")
    print("\n" + text + "\n\n" + table(rows) + f"\n\nwrote {out}/report.md, results.json, budget.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
