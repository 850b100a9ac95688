"""The scenario matrix: loading, errors that name the bad key, and the gateway configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings
from loadtest.bench.kit import round_plan
from loadtest.bench.matrix import DEFAULT_MATRIX, MatrixError, load_matrix, parse_matrix
from loadtest.bench.options import LevelPlan
from loadtest.bench.scenarios import RANDOM_WEIGHTS_NOTE, build_scenarios, gateway_config


def minimal(**set_fields):
    return {"sets": {"pii": {"monitors": [{"name": "pii", "action": "redact"}], **set_fields}}}


def test_default_matrix_loads_with_the_default_sets():
    matrix = load_matrix()
    assert list(matrix.sets) == [
        "profanity",
        "pii",
        "profanity-pii",
        "blocklist",
        "injection",
        "detoxify",
        "classifier",
    ]
    assert matrix.sets["detoxify"].local_detoxify == "tiny"
    assert matrix.streaming_for("pii")["mode"] == "holdback"
    assert matrix.streaming_for("profanity")["mode"] == "stream_first"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"sets": {"pii": {"monitors": [{"name": "pii", "stages": ["inptu"]}]}}}, "sets.pii.monitors.0.stages.0"),
        ({"sets": {"pii": {"monitors": [{"name": "pii", "threshold": 3}]}}}, "sets.pii.monitors.0.threshold"),
        ({"sets": {"pii": {"monitor": [{"name": "pii"}]}}}, "sets.pii.monitor"),
        ({"sets": {"pii": {"monitors": []}}}, "sets.pii.monitors"),
        ({"sets": {"pii": {"monitors": [{"name": "pii"}], "local_detoxify": "huge"}}}, "sets.pii.local_detoxify"),
        ({"sets": {}}, "sets"),
        ({"set": {}}, "set"),
        ({**minimal(), "gateway": {"port": 1}}, "gateway"),
        ({**minimal(), "streaming": {"window_chars": 10, "overlap_chars": 20}}, "sets.pii.streaming"),
        (minimal(streaming={"mode": "later"}), "sets.pii.streaming"),
    ],
)
def test_errors_name_the_bad_key(data, named):
    with pytest.raises(MatrixError) as caught:
        parse_matrix(data, "m.yaml")
    assert named in str(caught.value)
    assert "m.yaml" in str(caught.value)


@pytest.mark.parametrize("name", ["direct", "gateway", "Bad Name"])
def test_set_names_must_not_clash_or_be_odd(name):
    data = {"sets": {name: {"monitors": [{"name": "pii"}]}}}
    with pytest.raises(MatrixError, match="sets"):
        parse_matrix(data)


def test_matrix_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sets: [unclosed", encoding="utf-8")
    with pytest.raises(MatrixError, match="bad.yaml.*not valid YAML"):
        load_matrix(bad)
    with pytest.raises(MatrixError, match="cannot read"):
        load_matrix(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n", encoding="utf-8")
    with pytest.raises(MatrixError, match="mapping"):
        load_matrix(listy)


def test_select_keeps_order_and_names_unknown_sets():
    matrix = load_matrix()
    assert matrix.select(None) == list(matrix.sets)
    assert matrix.select(["pii", "profanity", "pii"]) == ["pii", "profanity"]
    with pytest.raises(MatrixError, match="unknown monitor set.*nope"):
        matrix.select(["nope"])


def test_scenarios_start_with_the_baselines():
    matrix = load_matrix()
    scenarios = build_scenarios(matrix, ["pii", "detoxify"])
    assert [s.name for s in scenarios] == ["direct", "gateway", "pii", "detoxify"]
    assert not scenarios[0].has_gateway and scenarios[1].has_gateway
    assert scenarios[1].monitors == ()
    assert RANDOM_WEIGHTS_NOTE in scenarios[3].notes
    assert scenarios[2].is_monitor_set and not scenarios[1].is_monitor_set


def test_gateway_configs_are_valid_gateway_settings(tmp_path):
    matrix = load_matrix()
    files = (tmp_path / "detoxify.ckpt", tmp_path / "hf-config")
    for scenario in build_scenarios(matrix, list(matrix.sets))[1:]:
        config = gateway_config(
            scenario,
            matrix,
            upstream="http://127.0.0.1:9",
            host="127.0.0.1",
            port=1234,
            work_dir=tmp_path,
            detoxify_files=files,
            classifier=("http://127.0.0.1:9", "sim-guard"),
        )
        settings = Settings.model_validate(yaml.safe_load(yaml.safe_dump(config)))
        assert settings.upstreams == ["http://127.0.0.1:9"]
        assert settings.audit.path == str(tmp_path / f"audit-{scenario.name}.db")
        if scenario.name == "detoxify":
            options = settings.monitors[0].options
            assert options["checkpoint"] == str(files[0])
            assert options["config_path"] == str(files[1])
        if scenario.name == "classifier":
            options = settings.monitors[0].options
            assert (options["base_url"], options["model"]) == ("http://127.0.0.1:9", "sim-guard")


def test_a_classifier_set_needs_an_engine(tmp_path):
    matrix = load_matrix()
    classifier = build_scenarios(matrix, ["classifier"])[2]
    with pytest.raises(ValueError, match="--classifier-url"):
        gateway_config(classifier, matrix, upstream="http://x:1", host="h", port=1, work_dir=tmp_path)


def test_direct_has_no_gateway_config(tmp_path):
    matrix = load_matrix()
    direct = build_scenarios(matrix, [])[0]
    with pytest.raises(ValueError, match="without a gateway"):
        gateway_config(direct, matrix, upstream="http://x:1", host="h", port=1, work_dir=tmp_path)


def test_a_local_model_set_needs_the_built_files(tmp_path):
    matrix = load_matrix()
    detoxify = build_scenarios(matrix, ["detoxify"])[2]
    with pytest.raises(ValueError, match="locally built"):
        gateway_config(detoxify, matrix, upstream="http://x:1", host="h", port=1, work_dir=tmp_path)


def test_rounds_are_interleaved_and_rotate_per_repeat():
    one, eight = LevelPlan(1, 3, 5, 120, 0.0), LevelPlan(8, 2, 24, 120, 0.25)
    plan = [(r, level.users, name) for r, level, name in round_plan(["direct", "gateway", "pii"], (one, eight))]
    assert plan[:6] == [
        (0, 1, "direct"),
        (0, 1, "gateway"),
        (0, 1, "pii"),
        (0, 8, "direct"),
        (0, 8, "gateway"),
        (0, 8, "pii"),
    ]
    assert [name for _, _, name in plan[6:9]] == ["gateway", "pii", "direct"]
    # Level 8 has 2 repeats, level 1 three: the third repeat runs level 1 alone.
    assert plan[12:] == [(2, 1, "pii"), (2, 1, "direct"), (2, 1, "gateway")]
    assert len(plan) == 15


def test_default_matrix_path_is_in_the_package():
    assert DEFAULT_MATRIX == Path(__file__).resolve().parents[3] / "loadtest" / "bench_matrix.yaml"
