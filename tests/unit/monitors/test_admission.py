"""Admission under a stage budget: the pure predictions, on a fake clock."""

from __future__ import annotations

import pytest

from monitors.admission import (
    Deadline,
    ServiceEstimate,
    admits,
    batch_wait,
    retry_after,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_from_the_stage_start():
    clock = Clock()
    deadline = Deadline(clock(), 0.150)
    clock.now += 0.1
    assert deadline.remaining(clock()) == pytest.approx(0.05)
    clock.now += 0.1
    assert deadline.remaining(clock()) == pytest.approx(-0.05)


def test_an_unseen_monitor_is_predicted_free():
    estimate = ServiceEstimate()
    assert estimate.predict() == 0.0 and estimate.in_flight == 0


def test_latency_and_concurrency_follow_the_checks_served():
    clock, estimate = Clock(), ServiceEstimate(weight=0.5)
    first = estimate.begin(clock())
    clock.now += 0.1
    estimate.end(first, clock())
    assert (estimate.latency_s, estimate.concurrency, estimate.in_flight) == (pytest.approx(0.1), 1.0, 0)
    # Two at once, each taking 0.3 s: the EWMA moves half way on each; both ran under
    # a load of two (the first saw the second arrive, the second found the first).
    a, b = estimate.begin(clock()), estimate.begin(clock())
    assert (a.seen, b.seen, estimate.in_flight) == (1, 2, 2)
    clock.now += 0.3
    estimate.end(a, clock())
    estimate.end(b, clock())
    assert estimate.latency_s == pytest.approx(0.2 + 0.5 * (0.3 - 0.2))
    assert estimate.concurrency == pytest.approx(1.5 + 0.5 * 0.5)


def test_prediction_scales_with_what_is_in_flight_past_the_observed_concurrency():
    clock, estimate = Clock(), ServiceEstimate()
    # Learn: 4 at a time, 100 ms each (a judge with 4 slots).
    for _ in range(30):
        tickets = [estimate.begin(clock()) for _ in range(4)]
        clock.now += 0.1
        for ticket in tickets:
            estimate.end(ticket, clock())
    assert estimate.latency_s == pytest.approx(0.1)
    # Ending in order, the four saw 4, 3, 3, 4 in flight.
    assert estimate.concurrency == pytest.approx(3.5, abs=0.05)
    assert estimate.predict() == pytest.approx(0.1)  # nothing in flight: the bare latency
    for _ in range(10):
        estimate.begin(clock())
    assert estimate.predict() == pytest.approx(0.1 * 10 / estimate.concurrency)


def test_a_check_of_several_texts_counts_each_text():
    clock, estimate = Clock(), ServiceEstimate()
    ticket = estimate.begin(clock(), texts=3)
    assert (ticket.seen, estimate.in_flight) == (3, 3)
    clock.now += 0.2
    estimate.end(ticket, clock())
    assert (estimate.in_flight, estimate.concurrency) == (0, 3.0)


def test_a_timed_out_check_raises_the_estimate():
    clock, estimate = Clock(), ServiceEstimate(weight=1.0)
    ticket = estimate.begin(clock())
    clock.now += 1.0  # the monitor's timeout
    estimate.end(ticket, clock())
    assert estimate.latency_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("queued", "incoming", "busy", "batches"),
    [
        (0, 1, False, 1),
        (0, 1, True, 2),
        (31, 1, False, 1),
        (32, 1, False, 2),
        (100, 4, True, 5),
    ],
)
def test_batch_wait_counts_batches_ahead(queued, incoming, busy, batches):
    assert batch_wait(queued, incoming, 32, 0.02, busy) == pytest.approx(batches * 0.02)


def test_admits_what_fits_and_whatever_has_nothing_ahead():
    assert admits(0.10, 0.15, ahead=5)
    assert admits(0.15, 0.15, ahead=5)
    assert not admits(0.16, 0.15, ahead=5)
    assert not admits(0.01, -0.01, ahead=1)  # the budget is already spent
    # Nothing ahead: tried whatever the (possibly stale) estimate says.
    assert admits(10.0, 0.15, ahead=0)


def test_retry_after_is_the_prediction_within_reason():
    assert retry_after(0.8) == pytest.approx(0.8)
    assert retry_after(0.0) == pytest.approx(0.05)
    assert retry_after(1e6) == pytest.approx(30.0)
