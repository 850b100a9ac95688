"""`taxgate bench --target` and Locust workers, end to end on loopback.

Real parts: the simulator as the upstream (in this process), a gateway started outside the
bench as the target, the bench CLI as a subprocess, Locust in distributed mode (a master
and worker processes).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import psutil
import pytest

from loadtest.bench.distributed import DistributedGenerator
from loadtest.bench.loadlayout import LoadLayout
from loadtest.bench.rounds import LoadGenerator, RoundSpec, Workload, round_message, run_round
from loadtest.bench.samples import read_samples
from loadtest.bench.schema import Report
from loadtest.datasets import load_dataset
from loadtest.harness import free_port
from loadtest.sim.server import create_sim_app
from loadtest.sim.settings import SimSettings
from tests.servers import ThreadedServer
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
MODEL = "sim-llama-8b"
KEY = "bench-target-key-0123456789"
pytestmark = pytest.mark.integration


class PromptRecorder:
    """ASGI wrapper around the simulator: keeps the prompt of every chat request it serves."""

    def __init__(self, app) -> None:
        self.app = app
        self.prompts: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.prompts.append(orjson.loads(body)["messages"][-1]["content"])
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def start_sim(model: str = MODEL, profile: str = "llama-8b-h100", record: bool = False):
    app = create_sim_app(SimSettings(profile=profile, output_mode="echo", model=model, seed=0))
    recorder = PromptRecorder(app) if record else None
    return ThreadedServer(recorder or app).start(), recorder


@pytest.fixture
def sim():
    server, _ = start_sim()
    yield server
    server.stop()


@pytest.fixture
def deployed(sim, start_gateway):
    """A gateway with a key and a monitor, started outside the bench: what a target is."""
    return start_gateway(
        upstreams=[sim.base_url],
        api_keys=[KEY],
        monitors=[{"name": "pii", "stages": ["input", "output"], "action": "redact"}],
    )


def bench(out: Path, *flags: str, env: dict | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "bench",
        "--out",
        str(out),
        "--cache-dir",
        str(out / "cache"),
        "--no-plots",
        *flags,
    ]
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **(env or {})}
    )


def read_report(out: Path) -> Report:
    return Report.model_validate(orjson.loads((out / "report.json").read_bytes()))


def test_bench_measures_a_running_gateway_with_a_master_and_two_workers(sim, deployed, tmp_path):
    out = tmp_path / "report"
    done = bench(
        out,
        "--upstream",
        sim.base_url,
        "--target",
        f"deployed={deployed.base_url}",
        "--target-key",
        "deployed=env:TG_TARGET_KEY",
        "--sets",
        "none",
        "--load-workers",
        "2",
        "--concurrency",
        "1,4",
        "--requests",
        "3",
        "--repeats",
        "2",
        "--warmup",
        "0.5",
        "--safety-sample",
        "5",
        env={"TG_TARGET_KEY": KEY},
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "Traceback" not in done.stderr
    report = read_report(out)
    rows = {(s.name, s.concurrency): s for s in report.scenarios}
    assert set(rows) == {(n, c) for n in ("direct", "deployed") for c in (1, 4)}
    for row in rows.values():
        assert row.errors == 0, row.error_examples
        assert row.requests == 2 * 3 * row.concurrency  # each worker sent its users' share
    assert {(t.scenario, t.baseline) for t in report.tax} == {("deployed", "direct")}
    assert [(h.scenario, h.baseline) for h in report.headline] == [("deployed", "direct")]
    assert report.safety == []  # the safety pass measures the bench's own monitor sets only
    (target,) = report.targets
    assert target.taxgate and target.url == deployed.base_url
    assert any(
        t.scenario == "deployed" and t.labels.get("monitor") == "pii" for t in report.monitor_timings
    )  # the gateway's own monitor time, from /metrics
    assert any("a Locust master and 2 worker process(es)" in n for n in report.meta.notes)
    assert all(row.cpu_cores.get("busiest load process") is not None for row in rows.values())
    logs = out / "work" / "logs"
    assert (logs / "locust-worker-1.log").exists() and (logs / "locust-worker-2.log").exists()
    # Each user was one of 0..3 across both workers, as one process numbers them.
    users = {
        orjson.loads(line)["user"]
        for line in (out / "work" / "samples" / "r0-c4-deployed.jsonl").read_bytes().splitlines()
    }
    assert users == {0, 1, 2, 3}
    # The key reached the gateway (no 401) but no file the bench wrote.
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_targets_that_cannot_be_measured_are_left_out_of_a_partial_report(sim, deployed, tmp_path):
    other, _ = start_sim(model="another-model")
    gone = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "report"
    try:
        done = bench(
            out,
            "--upstream",
            sim.base_url,
            "--sets",
            "none",
            "--no-safety",
            "--target",
            f"gone={gone}",
            "--target",
            f"other={other.base_url}",
            "--target",
            f"nokey={deployed.base_url.replace('127.0.0.1', 'localhost')}",
            "--target",
            f"good={deployed.base_url}",
            "--target-key",
            f"good={KEY}",
            "--concurrency",
            "2",
            "--requests",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
        )
    finally:
        other.stop()
    assert done.returncode == 3, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "Traceback" not in done.stderr + done.stdout
    report = read_report(out)
    assert {s.name for s in report.scenarios} == {"direct", "good"}
    missing = "\n".join(report.meta.missing)
    assert f"--target gone is unreachable at {gone}" in missing
    # The simulator also lists the guard classifier it serves on /classify.
    assert "--target other serves another-model, sim-guard, not 'sim-llama-8b'" in missing
    assert "--target nokey refused the bench (HTTP 401" in missing
    assert "--target-key nokey=KEY" in missing
    assert "partial report: --target gone" in done.stderr.replace("\n", "")


def bench_processes(pid: int, module: str) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if module in " ".join(p.cmdline())]


def test_a_worker_killed_mid_run_leaves_a_partial_report(sim, deployed, tmp_path):
    out = tmp_path / "report"
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "bench",
        "--out",
        str(out),
        "--no-plots",
        "--cache-dir",
        str(out / "cache"),
        "--upstream",
        sim.base_url,
        "--sets",
        "none",
        "--target",
        f"deployed={deployed.base_url}",
        "--target-key",
        f"deployed={KEY}",
        "--load-workers",
        "2",
        "--concurrency",
        "2",
        "--requests",
        "10",
        "--repeats",
        "40",
        "--warmup",
        "0",
        "--no-safety",
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        samples = out / "work" / "samples"
        # Once a round is in (the plan has 80), kill a worker: no goodbye, no last report.
        asyncio.run(wait_until(lambda: samples.exists() and any(samples.iterdir()), 180, "the first measured round"))
        workers = bench_processes(proc.pid, "loadtest.bench.locustworker")
        assert len(workers) == 2
        workers[1].send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, f"{stdout[-3000:]}\n{stderr[-5000:]}"
    assert "Traceback" not in stdout + stderr
    report = read_report(out)
    (missing,) = report.meta.missing
    # Seen mid-round by the master (no heartbeat) or between rounds by the bench (exited).
    assert re.search(r"lost a worker|local Locust worker\(s\) [12] exited", missing), missing
    assert "of 40 rounds" in missing
    assert report.scenarios  # what was measured before is in the report
    assert not bench_processes(proc.pid, "loadtest.bench.locust")  # nothing left running


def expected_prompts(samples, prompt_seed: int) -> Counter:
    """The prompts one process sends: user u's n-th request is its seeded rng's n-th choice."""
    prompts = [item.text for item in load_dataset(None, labels=["benign"])]
    per_user = Counter(s.user for s in samples)
    drawn = Counter()
    for user, n in per_user.items():
        rng = random.Random(f"{prompt_seed}:0:{user}")
        drawn.update(rng.choice(prompts) for _ in range(n))
    return drawn


@pytest.mark.parametrize("workers", [0, 2])
def test_one_process_and_two_workers_send_the_same_prompts(tmp_path, workers):
    server, recorder = start_sim(profile="instant", record=True)
    workload = Workload(model=MODEL, max_tokens=4, stop_timeout_s=10, seed=3)
    log = tmp_path / "locust.log"
    generator = DistributedGenerator(log, LoadLayout(local=workers)) if workers else LoadGenerator(log)
    try:
        with generator:
            spec = RoundSpec("direct", 5, 1, server.base_url, duration_s=60, requests=15)
            samples = run_round(spec, workload, tmp_path, generator)
    finally:
        server.stop()
    assert len(samples) == 15 and all(s.ok for s in samples)
    assert {s.user for s in samples} <= set(range(5))
    assert Counter(recorder.prompts) == expected_prompts(samples, prompt_seed=3 * 1000 + 1)


def test_a_worker_joins_from_another_machine_with_taxgate_bench_worker(sim, deployed, tmp_path):
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway", "bench", "worker", "--master", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = tmp_path / "report"
    try:
        done = bench(
            out,
            "--upstream",
            sim.base_url,
            "--sets",
            "none",
            "--no-safety",
            "--target",
            f"deployed={deployed.base_url}",
            "--target-key",
            f"deployed={KEY}",
            "--expect-workers",
            "1",
            "--master-bind",
            f"127.0.0.1:{port}",
            "--concurrency",
            "2",
            "--requests",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "0",
        )
        worker_output, _ = worker.communicate(timeout=60)  # it leaves when the master does
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert worker.returncode == 0, worker_output[-3000:]
    report = read_report(out)
    assert any("1 joined from elsewhere" in n for n in report.meta.notes)
    assert {s.name for s in report.scenarios} == {"direct", "deployed"}
    assert all(s.requests == 2 * 2 * 2 and s.errors == 0 for s in report.scenarios)


def test_workers_that_never_join_end_the_run_with_what_to_do(sim, deployed, tmp_path):
    out = tmp_path / "report"
    port = free_port()
    done = bench(
        out,
        "--upstream",
        sim.base_url,
        "--sets",
        "none",
        "--no-safety",
        "--target",
        f"deployed={deployed.base_url}",
        "--target-key",
        f"deployed={KEY}",
        "--load-workers",
        "1",
        "--expect-workers",
        "1",
        "--master-bind",
        f"127.0.0.1:{port}",
        "--ready-timeout",
        "5",
        "--concurrency",
        "1",
        "--requests",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        timeout_s=120,
    )
    assert done.returncode == 1, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "only 1 of 2 Locust workers joined within 5 s" in message
    assert f"taxgate bench worker --master HOST:{port}" in message
    assert not (out / "report.json").exists()  # nothing was measured: no report


def test_workers_send_the_prompts_of_the_masters_dataset(tmp_path):
    # Labels the bundled set does not have: a worker could only send these from the master's list.
    dataset = tmp_path / "mine.jsonl"
    texts = [f"my own prompt number {i}" for i in range(7)]
    dataset.write_bytes(b"".join(orjson.dumps({"text": t, "label": "mine"}) + b"\n" for t in texts))
    server, recorder = start_sim(profile="instant", record=True)
    workload = Workload(model=MODEL, max_tokens=4, stop_timeout_s=10, labels="mine", dataset=dataset)
    try:
        with DistributedGenerator(tmp_path / "locust.log", LoadLayout(local=2)) as generator:
            for repeat in range(2):  # the second round reuses the list the workers were sent
                spec = RoundSpec("direct", 4, repeat, server.base_url, duration_s=60, requests=8)
                run_round(spec, workload, tmp_path, generator)
    finally:
        server.stop()
    assert len(recorder.prompts) == 16 and set(recorder.prompts) <= set(texts)


def test_workers_end_a_timed_round_when_its_time_is_up(tmp_path):
    server, _ = start_sim(profile="instant")
    workload = Workload(model=MODEL, max_tokens=4, stop_timeout_s=30)
    samples_path = tmp_path / "timed.jsonl"
    try:
        with DistributedGenerator(tmp_path / "locust.log", LoadLayout(local=2)) as generator:
            spec = RoundSpec("direct", 3, 0, server.base_url, duration_s=1)
            answer = generator.run(round_message(spec, workload, samples_path), 120)
    finally:
        server.stop()
    # Stopped sending at 1 s and drained, not cut at the 30 s ceiling.
    assert answer["ok"] and not answer["cut"]
    samples = read_samples(samples_path)
    assert len(samples) > 3 and all(s.ok for s in samples)
    assert {s.user for s in samples} == {0, 1, 2}
    assert len(answer["processes"]) == 2 and all(len(p["cpu"]) >= 2 for p in answer["processes"])
