from __future__ import annotations

import pytest

from monitors.base import MonitorLoadError
from monitors.builtin import profanity
from monitors.config import MonitorSpec


@pytest.fixture(scope="module")
def monitor():
    return profanity.create(MonitorSpec(name="profanity"))


def test_insults_score_high_and_benign_text_low(monitor):
    insults = ["you are a stupid idiot", "shut up you dumb bitch", "fuck you, you worthless piece of shit"]
    benign = ["have a nice day", "The weather in Paris is lovely in spring.",
              "I will review the pull request tomorrow morning."]
    findings = monitor.check(insults + benign)
    assert [f.score > 0.9 for f in findings[:3]] == [True] * 3
    assert [f.score < 0.5 for f in findings[3:]] == [True] * 3
    assert all(set(f.labels) == {"profanity"} and f.labels["profanity"] == f.score for f in findings)
    assert all(isinstance(f.score, float) for f in findings)


def test_empty_batch(monitor):
    assert monitor.check([]) == []


def test_rejects_options():
    with pytest.raises(MonitorLoadError, match="threshhold"):
        profanity.create(MonitorSpec(name="profanity", threshhold=0.3))
