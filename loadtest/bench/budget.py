"""``taxgate bench budget``: what a tax budget buys and what it costs, with a slow judge.

Starts a slow judge (``loadtest/slow_judge.py``: ``--judge-latency-ms`` per answer,
``--judge-slots`` at once, so slots / latency checks a second), the simulator (profile
``instant``: the model costs ~nothing, so what is measured is the monitor) and two gateways
with the judge as an input monitor (``on_error: open``): ``no-budget`` (``degrade: never``)
and ``budget`` (``budgets: {input: --budget-ms}``, ``degrade: skip``). At each level
closed-loop clients stream chat completions for ``--duration`` to the simulator and through
each gateway, in the bench's interleaved round plan, ``--repeats`` times.

Reported: TTFT and E2E percentiles (all repeats pooled) and the TTFT tax over direct with
its interval over paired repeats (the statistics of ``taxgate bench``), how busy the judge
was, and coverage: the share of checks the judge answered in time
(``taxgate_monitor_checks_in_time_total`` against ``taxgate_monitor_skipped_total``).
``accounted``: the share of answered requests the judge's counters account for (in time,
skipped, or a counted monitor error). Writes report.json, report.md, report.html and
budget.png under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from rich.console import Console

from loadtest.bench import echo, kit
from loadtest.bench.procs import ManagedProcess, ProcessGroup
from loadtest.bench.stats import Estimate, pooled_delta, summarize
from loadtest.bench.tables import Table
from loadtest.harness import free_port

LOOPBACK = "127.0.0.1"
MODEL = "sim"
PROMPT = "Tell me a short story about a lighthouse keeper."
DIRECT, NO_BUDGET, BUDGET = "direct", "no-budget", "budget"
SCENARIOS = (DIRECT, NO_BUDGET, BUDGET)
TITLE = "taxgate bench budget"


@dataclass
class Round:
    """One scenario at one level for one repeat: raw TTFT/E2E (s) and counter deltas."""

    scenario: str
    clients: int
    repeat: int
    ttft_s: list[float]
    e2e_s: list[float]
    failed: int
    elapsed_s: float
    judged: float  # answers the judge served during the round
    counters: dict[str, float] = field(default_factory=dict)  # the gateway's judge counters


@dataclass
class Cell:
    """One scenario at one level, every repeat: what the report shows."""

    scenario: str
    clients: int
    rounds: list[Round]
    capacity: float  # judge checks per second

    def _sum(self, key: str) -> float:
        return sum(r.counters.get(key, 0.0) for r in self.rounds)

    @property
    def requests(self) -> int:
        return sum(len(r.ttft_s) for r in self.rounds)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rounds)

    @property
    def elapsed_s(self) -> float:
        return sum(r.elapsed_s for r in self.rounds)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def judge_per_s(self) -> float:
        return sum(r.judged for r in self.rounds) / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def judge_busy(self) -> float:
        return self.judge_per_s / self.capacity

    @property
    def in_time(self) -> float:
        return self._sum("in_time")

    @property
    def skipped_predicted(self) -> float:
        return self._sum("predicted")

    @property
    def skipped_late(self) -> float:
        return self._sum("late")

    @property
    def monitor_errors(self) -> float:
        return self._sum("errors")

    @property
    def checked(self) -> float:
        return self.in_time + self.skipped_predicted + self.skipped_late + self.monitor_errors

    @property
    def coverage(self) -> float | None:
        return self.in_time / self.checked if self.checked else None

    @property
    def accounted(self) -> float | None:
        """Share of the requests the gateway answered that its judge metrics account for."""
        return self.checked / self.requests if self.requests else None

    def percentile_ms(self, metric: str, name: str) -> float | None:
        values = summarize([v for r in self.rounds for v in getattr(r, f"{metric}_s")])
        return None if values is None else values.get(name) * 1000.0

    def tax_ms(self, base: Cell, q: float, method: str, rng: random.Random) -> Estimate | None:
        est = pooled_delta([r.ttft_s for r in self.rounds], [r.ttft_s for r in base.rounds], q, method, rng)
        return None if est is None else est.scaled(1000.0)


# -- flags --------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    kit.add_load_options(
        parser, concurrency=(4, 8, 16, 32), duration_s=4.0, repeats=3, warmup_s=2.0, users="closed-loop clients"
    )
    judge = parser.add_argument_group("the judge and the budget")
    judge.add_argument(
        "--budget-ms",
        type=float,
        default=150.0,
        metavar="MS",
        help="budgets.input of the 'budget' gateway (default 150)",
    )
    judge.add_argument(
        "--timeout-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="the judge monitor's timeout_ms in both gateways (default 1000)",
    )
    judge.add_argument(
        "--judge-latency-ms",
        type=float,
        default=100.0,
        metavar="MS",
        help="time the slow judge takes per answer (default 100)",
    )
    judge.add_argument(
        "--judge-slots",
        type=int,
        default=4,
        metavar="N",
        help="answers the judge serves at once (default 4: 40 checks/s at 100 ms)",
    )
    kit.add_output_options(parser, out="taxgate-budget")


def check_args(args: argparse.Namespace) -> None:
    kit.check_load_options(args)
    if args.judge_latency_ms <= 0 or args.judge_slots < 1:
        raise ValueError("--judge-latency-ms must be > 0 and --judge-slots >= 1")
    if args.budget_ms <= 0 or args.timeout_ms <= 0:
        raise ValueError("--budget-ms and --timeout-ms must be > 0")


# -- the load -----------------------------------------------------------------------
async def closed_loop(base: str, clients: int, seconds: float) -> tuple[list[float], list[float], int]:
    """``clients`` loops, each sending the next request when the last ends; TTFT and E2E
    (seconds) of the successful ones, and how many failed."""
    ttfts: list[float] = []
    e2es: list[float] = []
    failed = 0
    body = {"model": MODEL, "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": PROMPT}]}
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(http: httpx.AsyncClient) -> tuple[float, float] | None:
        sent = time.perf_counter()
        first = None
        async with http.stream("POST", base + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return None
            async for line in r.aiter_lines():
                if first is None and '"content":"' in line:
                    first = time.perf_counter()
        done = time.perf_counter()
        return (first or done) - sent, done - sent

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failed
        while time.perf_counter() < end:
            try:
                timing = await one(http)
            except httpx.HTTPError:
                timing = None
            if timing is None:
                failed += 1
            else:
                ttfts.append(timing[0])
                e2es.append(timing[1])

    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return ttfts, e2es, failed


def scrape(base: str) -> dict[str, float]:
    """The judge monitor's counters from a gateway's /metrics, summed by what we need."""
    text = httpx.get(base + "/metrics", timeout=10).text
    found = {"in_time": 0.0, "predicted": 0.0, "late": 0.0, "errors": 0.0}
    names = {"taxgate_monitor_checks_in_time_total": "in_time", "taxgate_monitor_errors_total": "errors"}
    for line in text.splitlines():
        if not line.startswith("taxgate_monitor_") or 'monitor="judge"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        metric = name.split("{", 1)[0]
        if metric == "taxgate_monitor_skipped_total":
            found["predicted" if 'reason="predicted"' in name else "late"] += float(value)
        elif metric in names:
            found[names[metric]] += float(value)
    return found


def judge_served(base: str) -> float:
    return float(httpx.get(base + "/stats", timeout=10).json()["served"])


# -- the servers --------------------------------------------------------------------
def gateway_config(
    port: int, upstream: str, judge: str, args: argparse.Namespace, budget: bool, work: Path, name: str
) -> Path:
    monitor = {
        "name": "judge",
        "id": "judge",
        "stages": ["input"],
        "base_url": judge,
        "model": "guard",
        "timeout_ms": args.timeout_ms,
        "on_error": "open",
        "degrade": "skip" if budget else "never",
    }
    config = {
        "host": LOOPBACK,
        "port": port,
        "upstreams": [upstream],
        "monitors": [monitor],
        "audit": {"path": str(work / f"audit-{name}.db")},
    }
    if budget:
        config["budgets"] = {"input": args.budget_ms}
    path = work / "configs" / f"gateway-{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def start_servers(group: ProcessGroup, args: argparse.Namespace, work: Path) -> dict[str, str]:
    taken: set[int] = set()
    judge_port, sim_port = free_port(taken=taken), free_port(taken=taken)
    judge = f"http://{LOOPBACK}:{judge_port}"
    sim = f"http://{LOOPBACK}:{sim_port}"
    logs = work / "logs"
    group.add(
        ManagedProcess(
            "slow judge",
            [
                sys.executable,
                "-m",
                "loadtest.slow_judge",
                "--port",
                str(judge_port),
                "--latency-ms",
                str(args.judge_latency_ms),
                "--slots",
                str(args.judge_slots),
            ],
            logs / "judge.log",
            judge + "/health",
            judge,
        )
    )
    group.add(
        echo.simulator(
            sim_port, profile="instant", model=MODEL, seed=args.seed, log=logs / "simulator.log", output_mode=None
        )
    )
    urls = {DIRECT: sim, "judge": judge}
    for name, budget in ((NO_BUDGET, False), (BUDGET, True)):
        port = free_port(taken=taken)
        base = f"http://{LOOPBACK}:{port}"
        config = gateway_config(port, sim, judge, args, budget, work, name)
        group.add(
            ManagedProcess(
                f"gateway {name}",
                [sys.executable, "-m", "gateway", "--log-level", "warning", "serve", "--config", str(config)],
                logs / f"gateway-{name}.log",
                base + "/ready",
                base,
            )
        )
        urls[name] = base
    group.start_all()
    group.wait_ready(args.ready_timeout)
    return urls


def measure(urls: dict[str, str], scenario: str, clients: int, repeat: int, seconds: float) -> Round:
    base = urls[scenario]
    before = scrape(base) if scenario != DIRECT else None
    served = judge_served(urls["judge"])
    started = time.perf_counter()
    ttfts, e2es, failed = asyncio.run(closed_loop(base, clients, seconds))
    # Closed loop: the last requests end up to one latency after the round's seconds.
    elapsed = time.perf_counter() - started
    time.sleep(0.3)  # a late check's verdict lands after its request: let the counters settle
    row = Round(scenario, clients, repeat, ttfts, e2es, failed, elapsed, judge_served(urls["judge"]) - served)
    if before is not None:
        after = scrape(base)
        row.counters = {key: after[key] - before[key] for key in after}
    return row


def run_rounds(args: argparse.Namespace, console: Console) -> tuple[list[Round], dict[str, float]]:
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    capacity = args.judge_slots / (args.judge_latency_ms / 1000.0)
    rounds: list[Round] = []
    phases = kit.PhaseClock()
    with ProcessGroup() as group:
        with console.status(f"starting the judge ({capacity:.0f} checks/s), the simulator, 2 gateways..."):
            urls = start_servers(group, args, work)
        phases.lap("start servers")
        for name in SCENARIOS:  # connections, imports, first judge answers
            asyncio.run(closed_loop(urls[name], 4, args.warmup))
        phases.lap("warm-up")
        plan = kit.round_plan(list(SCENARIOS), kit.simple_levels(args.concurrency, args.repeats, args.duration))
        with kit.progress_bar(console) as progress:
            task = progress.add_task("rounds", total=len(plan))
            for repeat, level, name in plan:
                progress.update(
                    task, description=f"repeat {repeat + 1}/{level.repeats}  {level.users:>3} clients  {name:<9}"
                )
                group.check_alive()
                rounds.append(measure(urls, name, level.users, repeat, args.duration))
                progress.advance(task)
        phases.lap("rounds")
    return rounds, phases.laps


def cells_of(rounds: Sequence[Round], capacity: float) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    for r in sorted(rounds, key=lambda r: r.repeat):
        cells.setdefault((r.scenario, r.clients), Cell(r.scenario, r.clients, [], capacity)).rounds.append(r)
    return cells


# -- the report ---------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _tax(est: Estimate | None) -> str:
    if est is None:
        return "-"
    if est.low is None or est.high is None:
        return f"{est.value:+.1f}"
    return f"{est.value:+.1f} ({est.low:+.1f}..{est.high:+.1f})"


def _share(value: float | None) -> str:
    return "n/a (no check counted)" if value is None else f"{value:.1%}"


def cell_fields(cell: Cell, base: Cell, method: str, rng: random.Random) -> dict:
    """One row of report.json (times in ms, shares in [0, 1])."""
    gateway = cell.scenario != DIRECT
    fields = {
        "scenario": cell.scenario,
        "clients": cell.clients,
        "rounds": len(cell.rounds),
        "requests": cell.requests,
        "failed": cell.failed,
        "requests_per_s": cell.rps,
        **{f"{m}_{p}_ms": cell.percentile_ms(m, p) for m in ("ttft", "e2e") for p in ("p50", "p95", "p99")},
        "judge_checks_per_s": cell.judge_per_s,
        "judge_busy": cell.judge_busy,
    }
    for q in (50, 95):
        tax = cell.tax_ms(base, q, method, rng) if gateway else None
        fields[f"ttft_tax_p{q}_ms"] = None if tax is None else tax.as_dict()
    if gateway:
        fields.update(
            in_time=cell.in_time,
            skipped_predicted=cell.skipped_predicted,
            skipped_late=cell.skipped_late,
            monitor_errors=cell.monitor_errors,
            coverage=cell.coverage,
            accounted=cell.accounted,
        )
    return fields


def budget_table(cells: dict[tuple[str, int], Cell], method: str, rng: random.Random) -> Table:
    rows = []
    for (name, clients), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], SCENARIOS.index(kv[0][0]))):
        base = cells[(DIRECT, clients)]
        gateway = name != DIRECT
        taxes = [_tax(cell.tax_ms(base, q, method, rng)) if gateway else "-" for q in (50, 95)]
        counters = (
            [
                f"{cell.in_time:.0f}",
                f"{cell.skipped_predicted:.0f}",
                f"{cell.skipped_late:.0f}",
                f"{cell.monitor_errors:.0f}",
                _share(cell.coverage),
                _share(cell.accounted),
            ]
            if gateway
            else ["-"] * 6
        )
        rows.append(
            (
                name,
                str(clients),
                f"{cell.rps:.0f}",
                _ms(cell.percentile_ms("ttft", "p50")),
                _ms(cell.percentile_ms("ttft", "p95")),
                *taxes,
                _ms(cell.percentile_ms("e2e", "p95")),
                f"{cell.judge_per_s:.1f}",
                f"{cell.judge_busy:.0%}",
                *counters,
            )
        )
    return Table(
        "Tax budget: a slow judge past its capacity",
        (
            "scenario",
            "clients",
            "req/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "TTFT tax p50 ms",
            "TTFT tax p95 ms",
            "E2E p95 ms",
            "judge checks/s",
            "judge busy",
            "in time",
            "skipped predicted",
            "skipped late",
            "monitor errors",
            "coverage",
            "accounted",
        ),
        rows,
        "Percentiles over every repeat pooled (linear interpolation, as `taxgate bench`); tax: scenario minus "
        "direct at the same level, 95% interval over paired repeats in brackets (none with 1 repeat). "
        "coverage: checks answered in time / checks counted; accounted: checks counted / requests answered.",
    )


def headline(cells: dict[tuple[str, int], Cell], args: argparse.Namespace) -> str:
    top = max(args.concurrency)
    budget, plain = cells[(BUDGET, top)], cells[(NO_BUDGET, top)]
    capacity = args.judge_slots / args.judge_latency_ms * 1000

    def p(cell: Cell, name: str) -> str:
        value = cell.percentile_ms("ttft", name)
        return "-" if value is None else f"{value:.0f} ms"

    return (
        f"At {top} clients, judge capacity {capacity:.0f} checks/s: with budgets.input={args.budget_ms:g} ms "
        f"TTFT p50 {p(budget, 'p50')} / p95 {p(budget, 'p95')}, judge {budget.judge_busy:.0%} busy, "
        f"coverage {_share(budget.coverage)}, {budget.skipped_predicted + budget.skipped_late:.0f} skips "
        f"counted (accounted {_share(budget.accounted)}); without: p50 {p(plain, 'p50')} / p95 "
        f"{p(plain, 'p95')}, judge {plain.judge_busy:.0%} busy, coverage {_share(plain.coverage)}."
    )


def plot(cells: dict[tuple[str, int], Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tax, cover) = plt.subplots(1, 2, figsize=(11, 4))
    rng = random.Random(0)
    for name in (NO_BUDGET, BUDGET):
        mine = sorted((c for c in cells.values() if c.scenario == name), key=lambda c: c.clients)
        levels = [c.clients for c in mine]
        for q, style in ((50, "-"), (95, "--")):
            values = [tax_value(c, cells[(DIRECT, c.clients)], q, rng) for c in mine]
            tax.plot(levels, values, marker="o", linestyle=style, label=f"{name} p{q}")
        cover.plot(levels, [(c.coverage or 0.0) * 100 for c in mine], marker="o", label=f"{name} coverage")
        cover.plot(levels, [c.judge_busy * 100 for c in mine], marker="x", linestyle=":", label=f"{name} judge busy")
    tax.set(xlabel="concurrent clients", ylabel="TTFT tax (ms)", title="TTFT tax vs load")
    cover.set(xlabel="concurrent clients", ylabel="%", title="Coverage and judge use vs load", ylim=(0, 105))
    for axis in (tax, cover):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tax_value(cell: Cell, base: Cell, q: float, rng: random.Random) -> float:
    est = cell.tax_ms(base, q, "t", rng)
    return float("nan") if est is None else est.value


def write(
    args: argparse.Namespace,
    cells: dict[tuple[str, int], Cell],
    phases: dict[str, float],
    started: datetime,
    wall_s: float,
) -> tuple[str, Table]:
    from loadtest.bench.report import write_table_report

    rng = random.Random(args.seed)
    table = budget_table(cells, args.ci_method, rng)
    text = headline(cells, args)
    payload = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "command": kit.command_line(),
            "wall_s": wall_s,
            "phases_s": phases,
            "ci_method": args.ci_method,
            "options": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if not k.startswith("_") and k not in ("command", "bench_command", "log_level")
            },
        },
        "headline": text,
        "rows": [cell_fields(cell, cells[(DIRECT, cell.clients)], args.ci_method, rng) for cell in cells.values()],
    }
    plot(cells, args.out / "budget.png")
    write_table_report(
        args.out, TITLE, payload, [table], [text, *kit.meta_lines(payload["meta"])], images=[args.out / "budget.png"]
    )
    return text, table


def _run(args: argparse.Namespace, console: Console) -> int:
    check_args(args)
    args.out = args.out.resolve()
    kit.quiet_logs(args.verbose)
    started, t0 = datetime.now(UTC), time.monotonic()
    rounds, phases = run_rounds(args, console)
    cells = cells_of(rounds, args.judge_slots / (args.judge_latency_ms / 1000.0))
    text, table = write(args, cells, phases, started, time.monotonic() - t0)
    out = kit.summary_console()
    out.print(text)
    kit.print_table(out, table)
    out.print(
        f"report: {args.out / 'report.html'}  (also report.md, report.json, budget.png) - {time.monotonic() - t0:.0f} s"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    return kit.guarded(TITLE, console, lambda: _run(args, console))
