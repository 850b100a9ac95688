"""Which sets a bench runs when a classifier set has no engine to call (--upstream, no --classifier-url)."""

from pathlib import Path

import pytest

from loadtest.bench.matrix import load_matrix
from loadtest.bench.options import BenchOptions
from loadtest.bench.runner import BenchRunner


def runner(**fields) -> BenchRunner:
    return BenchRunner(BenchOptions(out=Path("out"), concurrency=(1,), warmup_s=0, max_tokens=8, **fields))


def test_without_upstream_every_set_runs_against_the_simulators_classify():
    matrix = load_matrix()
    names, notes = runner()._sets(matrix)
    assert "classifier" in names and notes == []


def test_with_upstream_and_no_engine_the_default_selection_leaves_the_classifier_set_out_and_says_so():
    matrix = load_matrix()
    names, notes = runner(upstream="http://127.0.0.1:9")._sets(matrix)
    assert "classifier" not in names and "pii" in names
    assert len(notes) == 1 and "--classifier-url" in notes[0]


def test_with_upstream_a_named_classifier_set_without_an_engine_is_a_clear_error():
    with pytest.raises(ValueError, match="--classifier-url"):
        runner(upstream="http://127.0.0.1:9", sets=("pii", "classifier"))._sets(load_matrix())


def test_with_an_engine_the_classifier_set_runs_through_the_upstream():
    names, notes = runner(upstream="http://127.0.0.1:9", classifier_url="http://127.0.0.1:8")._sets(load_matrix())
    assert "classifier" in names and notes == []
