import logging
import random

import pytest

from loadtest.sim.faults import (
    FAULT_KINDS,
    DropInjectedTracebacks,
    Fault,
    FaultPlan,
    FaultRates,
    InjectedFault,
)


def draws(rates: FaultRates, n: int, seed: int = 0, max_chunks: int = 50) -> list[Fault | None]:
    plan = FaultPlan(rates, random.Random(seed))
    return [plan.draw(max_chunks) for _ in range(n)]


def test_no_rates_no_faults_and_no_draws():
    rng = random.Random(1)
    plan = FaultPlan(FaultRates(), rng)
    assert all(plan.draw(10) is None for _ in range(100))
    assert rng.random() == random.Random(1).random()  # the source was never touched


def test_rates_are_kept_and_the_plan_counts_what_it_injected():
    rates = FaultRates(reset=0.05, stall=0.02, garbage=0.03)
    plan = FaultPlan(rates, random.Random(7))
    got = [plan.draw(20) for _ in range(20000)]
    for kind in FAULT_KINDS:
        share = sum(1 for f in got if f is not None and f.kind == kind) / len(got)
        assert share == pytest.approx(getattr(rates, kind), abs=0.006)
        assert plan.injected[kind] == sum(1 for f in got if f is not None and f.kind == kind)


def test_same_seed_same_faults_and_positions_in_range():
    rates = FaultRates(reset=0.2, stall=0.2, garbage=0.2, stall_s=3)
    first = draws(rates, 500, seed=3, max_chunks=7)
    assert first == draws(rates, 500, seed=3, max_chunks=7)
    assert first != draws(rates, 500, seed=4, max_chunks=7)
    faults = [f for f in first if f is not None]
    assert {f.after_chunks for f in faults} == set(range(7))
    assert {f.stall_s for f in faults} == {3}


def test_an_answer_of_no_tokens_still_gets_its_fault_at_zero():
    assert {f.after_chunks for f in draws(FaultRates(reset=1.0), 20, max_chunks=0)} == {0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reset": -0.1}, "between 0 and 1"),
        ({"garbage": 1.5}, "between 0 and 1"),
        ({"reset": 0.6, "stall": 0.6}, "add up to 1.2"),
        ({"stall_s": 0}, "stall_s"),
    ],
)
def test_bad_rates_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaultRates(**kwargs)


def test_only_injected_tracebacks_are_dropped():
    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, (type(exc), exc, None)
        )

    keep = DropInjectedTracebacks()
    assert keep.filter(record(InjectedFault("reset"))) is False
    assert keep.filter(record(RuntimeError("a real bug"))) is True
