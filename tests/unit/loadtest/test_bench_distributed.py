"""Locust workers: how a round's users and requests are dealt, the load CPU, what a lost worker leaves."""

from __future__ import annotations

import random

import pytest

from loadtest.bench import cpu
from loadtest.bench.distributed import (
    LoadLost,
    first_users,
    load_cores,
    lost_rounds,
    process_cores,
    split_quota,
)
from loadtest.bench.loadlayout import LoadLayout, split_host_port
from loadtest.bench.options import BenchOptions


@pytest.mark.parametrize(
    ("total", "users", "quotas"),
    [
        (48, [8, 8], [24, 24]),  # 16 users x 3 requests on two workers
        (15, [3, 2], [9, 6]),  # 5 users x 3: each worker its users' share
        (7, [1, 1, 1], [3, 2, 2]),  # a remainder goes to the first workers
        (3, [1, 0], [3, 0]),  # a worker dealt no user gets no request
        (0, [4, 4], [0, 0]),  # a timed round: no quota
        (1, [1, 1], [1, 1]),  # never 0 for a worker with users: 0 means "no quota" to Locust
    ],
)
def test_quota_split_follows_the_users(total, users, quotas):
    assert split_quota(total, users) == quotas


def test_quota_split_always_sums_to_the_round():
    rng = random.Random(0)
    for _ in range(200):
        users = [rng.randint(1, 40) for _ in range(rng.randint(1, 6))]
        per_user = rng.randint(1, 5)
        quotas = split_quota(sum(users) * per_user, users)
        assert sum(quotas) == sum(users) * per_user
        assert all(q == n * per_user for q, n in zip(quotas, users, strict=True))


def test_users_are_numbered_across_workers_as_in_one_process():
    assert first_users([3, 2, 0, 4]) == [0, 3, 5, 5]
    counts = [5, 4, 4]
    numbers = [first + i for first, n in zip(first_users(counts), counts, strict=True) for i in range(n)]
    assert numbers == list(range(13))


def test_each_workers_cores_come_from_the_series_it_reported():
    busy = {"cpu": [[0.0, 0.0], [10.0, 9.0]]}  # 0.9 cores
    idle = {"cpu": [[0.0, 5.0], [10.0, 6.0]]}  # 0.1 cores
    late = {"cpu": [[4.0, 0.0], [10.0, 1.0]]}  # started after the window began
    assert process_cores([busy, idle, late], 2.0, 8.0) == [pytest.approx(0.9), pytest.approx(0.1), None]


def test_layout_binds_loopback_unless_workers_join_from_elsewhere():
    assert LoadLayout(local=2).bind_address() == ("127.0.0.1", 0)
    assert LoadLayout(remote=4).bind_address() == ("0.0.0.0", 5557)
    assert LoadLayout(local=1, bind="10.0.0.5:6000").bind_address() == ("10.0.0.5", 6000)
    assert not LoadLayout().distributed
    assert "2 worker process(es), 1 on this host and 1 joined" in LoadLayout(1, 1).describe()
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_host_port("5557", "--master-bind")
    with pytest.raises(ValueError, match="--load-workers"):
        BenchOptions(out=None, concurrency=(1,), warmup_s=0, max_tokens=8, load_workers=-1)
    with pytest.raises(ValueError, match="--master-bind"):
        BenchOptions(out=None, concurrency=(1,), warmup_s=0, max_tokens=8, master_bind="x")


def test_a_lost_worker_leaves_a_list_of_what_was_not_measured():
    class Level:
        def __init__(self, users):
            self.users = users

    one, four = Level(1), Level(4)
    plan = [(r, level, name) for r in range(2) for level in (one, four) for name in ("direct", "deployed")]
    samples = {("direct", 1): [[], []], ("deployed", 1): [[], []], ("direct", 4): [[]], ("deployed", 4): [[]]}
    (note,) = lost_rounds(
        LoadLost(
            "the load generator (Locust) failed a round: lost a worker "
            "mid-round: worker 2 on h stopped answering\n  log: x"
        ),
        plan,
        samples,
    )
    assert note.startswith("the load generator (Locust) failed a round: lost a worker mid-round")
    assert "direct at 4 users: 1 of 2 rounds; deployed at 4 users: 1 of 2 rounds" in note
    assert "at 1 users" not in note


class MasterSeries:
    """The sampler's view of the master process only (what load_cores reads from it)."""

    def __init__(self, series):
        self._series = series

    def series(self, name):
        return self._series if name == "load generator" else []


class Workers:
    def __init__(self, processes):
        self.processes = processes


def test_load_cores_sum_every_process_and_flag_the_busiest():
    master = MasterSeries([(0.0, 0.0), (10.0, 1.0)])  # 0.1 cores
    workers = Workers([{"cpu": [[0.0, 0.0], [10.0, 9.0]]}, {"cpu": [[0.0, 0.0], [10.0, 4.0]]}])
    cores = load_cores(workers, master, 2.0, 8.0)
    assert cores[cpu.LOAD_GENERATOR] == pytest.approx(1.4)
    assert cores[cpu.LOAD_BUSIEST] == pytest.approx(0.9)
    assert cpu.CLIENT_BOUND in cpu.saturation_flags(cores, 16)  # one worker is at its core
    one = load_cores(Workers([]), master, 2.0, 8.0)  # one Locust process: itself
    assert one[cpu.LOAD_GENERATOR] == one[cpu.LOAD_BUSIEST] == pytest.approx(0.1)
    assert load_cores(Workers([]), MasterSeries([]), 2.0, 8.0) == {cpu.LOAD_GENERATOR: None, cpu.LOAD_BUSIEST: None}
