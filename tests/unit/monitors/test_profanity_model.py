"""The fast scorer gives alt-profanity-check's own ``predict_prob``, text for text."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitors.base import MonitorLoadError
from monitors.builtin import profanity_model

DATA = Path(__file__).resolve().parents[3] / "loadtest" / "data"


@pytest.fixture(scope="module")
def reference():
    from profanity_check import profanity_check  # the reference: sklearn's own pipeline

    return profanity_check


@pytest.fixture(scope="module")
def model():
    return profanity_model.load()


def bundled_texts() -> list[str]:
    return [
        json.loads(line)["text"]
        for path in sorted(DATA.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def test_equals_predict_prob_on_the_bundled_dataset(model, reference):
    texts = bundled_texts()
    assert len(texts) > 600
    # Sentences too, as the monitor scores them; and texts with no known word at all.
    texts += [s for t in texts[:100] for s in t.split(". ")] + ["", "   ", "zzqx", "123 456"]
    expected = reference.predict_prob(texts)
    got = model(texts)
    assert len(got) == len(texts)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-9
    assert min(got) < 0.1 and max(got) > 0.9  # the comparison covers both ends


# Words the model knows (so dot products are not all zero), mixed with case, punctuation
# and arbitrary characters (the tokenizer's and lowercasing's edge cases).
@functools.cache
def vocabulary() -> list[str]:
    import joblib

    return sorted(joblib.load(profanity_model.package_data() / "vectorizer.joblib").vocabulary_)


_KNOWN = st.deferred(lambda: st.sampled_from(vocabulary()))
_WORD = st.one_of(_KNOWN, _KNOWN.map(str.upper), st.text(max_size=8))
_TEXT = st.lists(_WORD, max_size=40).flatmap(
    lambda words: st.sampled_from([" ", ", ", "! ", "\n", "_", "-"]).map(lambda sep: sep.join(words))
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TEXT, min_size=1, max_size=8))
def test_equals_predict_prob_on_generated_text(model, reference, texts):
    expected = reference.predict_prob(texts)
    for got, want in zip(model(texts), expected, strict=True):
        assert abs(got - want) < 1e-9


def test_refuses_a_model_it_would_score_differently(reference):
    import copy

    vectorizer = copy.deepcopy(reference.vectorizer)
    vectorizer.set_params(ngram_range=(1, 2))
    with pytest.raises(MonitorLoadError, match="word unigrams"):
        profanity_model.from_fitted(vectorizer, reference.model)
    calibrated = copy.deepcopy(reference.model)
    calibrated.calibrated_classifiers_[0].method = "isotonic"
    with pytest.raises(MonitorLoadError, match="sigmoid"):
        profanity_model.from_fitted(reference.vectorizer, calibrated)
