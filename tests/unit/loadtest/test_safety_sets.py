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
    b.write_text(
        '{"text": "yo", "label": "toxic", "source": "forum"}\n{"text": "ok", "label": "benign"}\n', encoding="utf-8"
    )
    items = safety_items([DatasetSpec.parse(str(a)), DatasetSpec.parse(f"ext={b}")])
    # The source: the item's own field, else its dataset's name.
    assert items == [("hi", "a/benign", "a"), ("yo", "ext/toxic", "forum"), ("ok", "ext/benign", "ext")]
    with pytest.raises(ValueError, match="named alike"):
        safety_items([DatasetSpec.parse(str(a)), DatasetSpec.parse(str(a))])
    assert safety_items([DatasetSpec.parse(str(a))]) == [("hi", "benign", "a")]
    assert {source for _, _, source in safety_items(())} == {"bundled"}


def test_result_pools_benign_labels_and_gives_intervals():
    result = SafetyResult("s")
    result.counts = {
        "ext/benign": Counter(passed=98, altered=1, blocked=1),
        "ext/toxic": Counter(blocked=30, passed=70),
        "benign": Counter(passed=100),
    }
    assert is_benign("ext/benign") and not is_benign("ext/toxic")
    assert set(result.catch_rates()) == {"ext/toxic"}
    assert result.benign_share(("blocked", "altered")) == pytest.approx(2 / 200)
    intervals = result.intervals()
    assert intervals["ext/toxic"] == wilson(30, 100)
    assert intervals["ext/benign"] == wilson(2, 100)


def test_rates_per_source_any_label_and_false_positives_of_any_action():
    result = SafetyResult("s")
    for label, verdict, source, count in [
        ("harmful_request", "blocked", "redteam", 8),
        ("harmful_request", "passed", "redteam", 2),
        ("harmful_request", "passed", "forum", 10),
        ("benign", "flagged", "forum", 10),
        ("benign", "passed", "docs", 10),
    ]:
        for _ in range(count):
            result.add(label, verdict, source)
    assert result.catch_rates() == {"harmful_request": pytest.approx(8 / 20)}
    per_source = result.source_rates()
    assert set(per_source) == {"redteam", "forum", "docs"}
    assert per_source["redteam"].catch_rates() == {"harmful_request": pytest.approx(0.8)}
    assert per_source["forum"].catch_rates() == {"harmful_request": 0.0}
    # An annotate monitor that flags benign items blocks none, but it is a false positive.
    assert result.benign_share(("blocked",)) == 0.0
    assert result.rates.false_positive_rate() == pytest.approx(0.5)
    assert result.rates.benign_interval() == wilson(10, 20)
    assert per_source["docs"].false_positive_rate() == 0.0
    assert per_source["redteam"].false_positive_rate() is None  # no benign item there
