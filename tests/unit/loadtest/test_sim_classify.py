"""The simulator's guard classifier: its pure latency model and its /classify route."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from loadtest.sim.classify import (
    CLASSIFIER_PROFILES,
    LABELS,
    ClassifierProfile,
    score,
    simulate_calls,
    take_step,
)
from tests.unit.loadtest.test_sim_app import client_for

FLAT = ClassifierProfile("flat", call_overhead_s=0.001, step_base_s=0.002, per_token_s=1e-5, max_batch_tokens=1000)


def test_a_call_costs_overhead_plus_a_step_of_its_tokens():
    assert simulate_calls(FLAT, random.Random(0), [(0.0, 100)]) == [pytest.approx(0.001 + 0.002 + 0.001)]


def test_calls_waiting_together_share_one_step():
    # Eight calls arriving together: one step of all their tokens, far less than eight steps.
    together = simulate_calls(FLAT, random.Random(0), [(0.0, 50)] * 8)
    assert together == [pytest.approx(0.001 + 0.002 + 400 * 1e-5)] * 8
    apart = simulate_calls(FLAT, random.Random(0), [(i * 0.1, 50) for i in range(8)])
    assert [t - i * 0.1 for i, t in enumerate(apart)] == [pytest.approx(0.001 + 0.002 + 50 * 1e-5)] * 8


def test_a_call_arriving_during_a_step_waits_for_the_next():
    first, second = simulate_calls(FLAT, random.Random(0), [(0.0, 100), (0.002, 100)])
    assert first == pytest.approx(0.004)
    assert second == pytest.approx(first + 0.002 + 0.001)


def test_a_step_holds_at_most_its_token_budget_but_always_one_call():
    assert take_step([600, 300, 200], 1000) == 2
    assert take_step([5000, 10], 1000) == 1
    assert take_step([], 1000) == 0


def test_the_same_seed_gives_the_same_times():
    profile = CLASSIFIER_PROFILES["bert-base-gpu"]
    calls = [(i * 0.0007, 20 + i % 30) for i in range(200)]
    assert simulate_calls(profile, random.Random(7), calls) == simulate_calls(profile, random.Random(7), calls)
    assert simulate_calls(profile, random.Random(7), calls) != simulate_calls(profile, random.Random(8), calls)


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError):
        ClassifierProfile("x", -1, 0, 0, 10)
    with pytest.raises(ValueError):
        ClassifierProfile("x", 0, 0, 0, 0)


def test_hostile_words_score_unsafe():
    assert score("you idiot") == [pytest.approx(0.05), 0.95]
    assert score("a kind word") == [pytest.approx(0.97), 0.03]
    assert LABELS == ("safe", "unsafe")


async def test_classify_route_answers_like_vllm():
    async with client_for() as client:
        models = (await client.get("/v1/models")).json()["data"]
        assert models[1]["id"] == "sim-guard" and models[1]["max_model_len"] == 512
        body = (await client.post("/classify", json={"model": "sim-guard", "input": ["hi", "you idiot"]})).json()
        assert body["object"] == "list" and body["model"] == "sim-guard"
        assert [(d["index"], d["label"], d["num_classes"]) for d in body["data"]] == [(0, "safe", 2), (1, "unsafe", 2)]
        assert body["data"][1]["probs"] == pytest.approx([0.05, 0.95])
        assert body["usage"]["prompt_tokens"] == (1 + 2) + (2 + 2)  # tokens plus [CLS] and [SEP] each
        raw = (
            await client.post("/classify", json={"model": "sim-guard", "input": "hi", "use_activation": False})
        ).json()
        assert raw["data"][0]["probs"] == pytest.approx([math.log(0.97), math.log(0.03)])


@pytest.mark.parametrize(
    "body, status",
    [
        ({"model": "other", "input": ["hi"]}, 404),
        ({"model": "sim-guard", "input": []}, 400),
        ({"model": "sim-guard", "input": [1]}, 400),
        ({"model": "sim-guard", "input": ["word " * 600]}, 400),
        ({"model": "sim-guard", "input": ["hi"], "use_activation": "no"}, 400),
    ],
)
async def test_classify_refuses_what_vllm_refuses(body, status):
    async with client_for() as client:
        response = await client.post("/classify", json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_concurrent_calls_are_answered_together():
    async with client_for(classifier_profile="bert-base-gpu") as client:
        answers = await asyncio.gather(
            *(client.post("/classify", json={"model": "sim-guard", "input": [f"t{i}"]}) for i in range(16))
        )
    assert all(a.status_code == 200 for a in answers)
