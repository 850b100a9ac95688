"""The simulator's pure timing model: profiles, scheduler, closed-loop behaviour."""

from __future__ import annotations

import random
from statistics import mean

import pytest

from loadtest.sim.timing import (
    PROFILES,
    BatchScheduler,
    LatencyProfile,
    Sequence,
    get_profile,
    simulate_closed_loop,
)

FLAT = LatencyProfile("flat", prefill_s_per_token=0.001, step_base_s=0.01, step_per_seq_s=0.001, max_num_seqs=2)


def run(
    profile_name: str,
    concurrency: int,
    *,
    seed: int = 0,
    output_tokens: int = 64,
    prompt_tokens: int = 100,
    requests_per_client: int = 3,
):
    return simulate_closed_loop(
        get_profile(profile_name),
        random.Random(seed),
        concurrency=concurrency,
        requests_per_client=requests_per_client,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )


def test_presets_exist():
    assert {"llama-8b-h100", "llama-70b-h100x4", "tiny-cpu", "instant"} <= set(PROFILES)
    assert get_profile("llama-8b-h100").max_num_seqs == 256


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="llama-8b-h100"):
        get_profile("nope")


@pytest.mark.parametrize("field, value", [("max_num_seqs", 0), ("jitter", 1.5), ("step_base_s", -1.0)])
def test_profile_rejects_nonsense(field, value):
    kwargs = dict(name="x", prefill_s_per_token=0.0, step_base_s=0.01, step_per_seq_s=0.0, max_num_seqs=4)
    kwargs[field] = value
    with pytest.raises(ValueError):
        LatencyProfile(**kwargs)


def test_llama_8b_at_low_load_matches_its_billing():
    timings = run("llama-8b-h100", 1)
    assert 0.08 <= mean(t.ttft_s for t in timings) <= 0.12
    assert 0.010 <= mean(t.tpot_s for t in timings) <= 0.014


def test_itl_grows_with_concurrency():
    tpot = [mean(t.tpot_s for t in run("llama-8b-h100", c)) for c in (1, 16, 64, 256)]
    assert tpot == sorted(tpot)
    assert tpot[-1] > 3 * tpot[0]


def test_knee_at_max_num_seqs():
    # tiny-cpu runs 8 at once: up to 8 clients never queue; at 16, half wait for a whole
    # generation before their prefill.
    ttft = {c: mean(t.ttft_s for t in run("tiny-cpu", c, requests_per_client=6)) for c in (4, 8, 16)}
    assert ttft[8] < 2 * ttft[4]
    assert ttft[16] > 5 * ttft[8]


def test_itl_stops_growing_beyond_max_num_seqs():
    itl_at_max = mean(t.tpot_s for t in run("tiny-cpu", 8))
    itl_beyond = mean(t.tpot_s for t in run("tiny-cpu", 32))
    assert itl_beyond == pytest.approx(itl_at_max, rel=0.15)


def test_same_seed_same_timings_other_seed_other_timings():
    assert run("llama-8b-h100", 8, seed=7) == run("llama-8b-h100", 8, seed=7)
    assert run("llama-8b-h100", 8, seed=7) != run("llama-8b-h100", 8, seed=8)


def test_jitter_stays_within_its_fraction():
    profile = get_profile("llama-8b-h100")
    rng = random.Random(1)
    nominal = profile.step_base_s + profile.step_per_seq_s * 10
    for _ in range(1000):
        assert abs(profile.step_time(10, 0, rng) / nominal - 1) <= profile.jitter + 1e-9


def test_step_time_counts_batch_and_prefill():
    rng = random.Random(0)
    assert FLAT.step_time(0, 0, rng) == pytest.approx(0.01)
    assert FLAT.step_time(3, 0, rng) == pytest.approx(0.013)
    assert FLAT.step_time(1, 50, rng) == pytest.approx(0.061)


def test_scheduler_admits_fifo_up_to_the_limit_and_emits_one_token_each():
    scheduler = BatchScheduler(FLAT, random.Random(0))
    a, b, c = Sequence(10, 2), Sequence(20, 5), Sequence(5, 1)
    for seq in (a, b, c):
        scheduler.add(seq)
    step = scheduler.step()
    assert step.admitted == [a, b]
    assert step.duration_s == pytest.approx(0.01 + 0.002 + 0.030)
    assert (a.emitted, b.emitted, c.emitted) == (1, 1, 0)
    assert (scheduler.num_running, scheduler.num_waiting) == (2, 1)
    step = scheduler.step()
    assert step.finished == [a] and step.admitted == []
    step = scheduler.step()  # a's slot is free: c gets in, prefills and finishes at once
    assert step.admitted == [c] and step.finished == [c]
    assert b.emitted == 3


def test_live_lists_running_then_waiting():
    scheduler = BatchScheduler(FLAT, random.Random(0))
    seqs = [Sequence(1, 9) for _ in range(4)]
    for seq in seqs:
        scheduler.add(seq)
    scheduler.step()
    scheduler.abort(seqs[2])
    assert scheduler.live() == [seqs[0], seqs[1], seqs[3]]


def test_abort_frees_the_slot_for_the_next_waiting_sequence():
    scheduler = BatchScheduler(FLAT, random.Random(0))
    running, other, waiting = Sequence(1, 100), Sequence(1, 100), Sequence(1, 100)
    for seq in (running, other, waiting):
        scheduler.add(seq)
    scheduler.step()
    assert scheduler.abort(running) is True
    assert scheduler.abort(running) is False
    assert scheduler.num_running == 1
    assert scheduler.step().admitted == [waiting]


def test_abort_while_waiting_or_before_queueing():
    scheduler = BatchScheduler(FLAT, random.Random(0))
    queued, never_added = Sequence(1, 3), Sequence(1, 3)
    scheduler.add(queued)
    assert scheduler.abort(queued) and scheduler.num_waiting == 0
    assert not scheduler.has_work
    assert scheduler.abort(never_added)
    scheduler.add(never_added)  # arrives after its client left: dropped
    assert not scheduler.has_work
    assert scheduler.step().admitted == []


def test_finished_sequences_cannot_be_aborted():
    scheduler = BatchScheduler(FLAT, random.Random(0))
    seq = Sequence(1, 1)
    scheduler.add(seq)
    assert scheduler.step().finished == [seq]
    assert scheduler.abort(seq) is False


def test_sequence_must_produce_a_token():
    with pytest.raises(ValueError):
        BatchScheduler(FLAT, random.Random(0)).add(Sequence(1, 0))
