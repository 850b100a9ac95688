from __future__ import annotations

from collections import Counter

import pytest

from loadtest.bench.safety import SafetyResult, is_benign, safety_items
from loadtest.bench.stats import wilson
from loadtest.datasets import DatasetSpec


def test_wilson_interval_known_values():
    lo, hi = wilson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-4)
    lo, hi = wilson(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def test_several_datasets_keep_their_labels_apart(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"text": "hi", "label": "benign"}\n', encoding="utf-8")
    b.write_text('{"text": "yo", "label": "toxic"}\n{"text": "ok", "label": "benign"}\n',
                 encoding="utf-8")
    items = safety_items([DatasetSpec.parse(str(a)), DatasetSpec.parse(f"ext={b}")])
    assert items == [("hi", "a/benign"), ("yo", "ext/toxic"), ("ok", "ext/benign")]
    with pytest.raises(ValueError, match="named alike"):
        safety_items([DatasetSpec.parse(str(a)), DatasetSpec.parse(str(a))])
    assert safety_items([DatasetSpec.parse(str(a))]) == [("hi", "benign")]


def test_result_pools_benign_labels_and_gives_intervals():
    result = SafetyResult("s")
    result.counts = {"ext/benign": Counter(passed=98, altered=1, blocked=1),
                     "ext/toxic": Counter(blocked=30, passed=70), "benign": Counter(passed=100)}
    assert is_benign("ext/benign") and not is_benign("ext/toxic")
    assert set(result.catch_rates()) == {"ext/toxic"}
    assert result.benign_share(("blocked", "altered")) == pytest.approx(2 / 200)
    intervals = result.intervals()
    assert intervals["ext/toxic"] == wilson(30, 100)
    assert intervals["ext/benign"] == wilson(2, 100)
