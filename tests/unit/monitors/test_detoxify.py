"""The real Detoxify loader on a tiny random BERT built here (no downloads)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("detoxify")

from loadtest.tiny_detoxify import build_detoxify_checkpoint  # noqa: E402
from monitors.base import MonitorLoadError  # noqa: E402
from monitors.builtin import detoxify_monitor  # noqa: E402
from monitors.config import MonitorSpec  # noqa: E402

DETOXIFY_LABELS = {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return build_detoxify_checkpoint(tmp_path_factory.mktemp("detoxify"))


@pytest.fixture(scope="module")
def monitor(tiny_checkpoint):
    checkpoint, config_dir = tiny_checkpoint
    built = detoxify_monitor.create(
        MonitorSpec(name="detoxify", checkpoint=str(checkpoint), config_path=str(config_dir))
    )
    yield built
    built.close()


def test_scores_a_batch_with_detoxify_label_names(monitor):
    texts = ["hello there", "you are an idiot", "x" * 3000]  # the last is cut at 512 tokens
    findings = monitor.check(texts)
    assert len(findings) == 3
    for finding in findings:
        assert set(finding.labels) == DETOXIFY_LABELS
        assert all(0.0 <= v <= 1.0 and isinstance(v, float) for v in finding.labels.values())
        assert finding.score == max(finding.labels.values())
        assert finding.spans == ()


def test_a_batch_of_one_is_still_per_label_floats(monitor):
    [finding] = monitor.check(["just one"])
    assert set(finding.labels) == DETOXIFY_LABELS
    assert monitor.check([]) == []


def test_same_text_same_score_alone_or_batched(monitor):
    alone = monitor.check(["steady"])[0].score
    batched = monitor.check(["steady", "a much longer text that pads the batch"])[0].score
    assert batched == pytest.approx(alone, abs=1e-4)


@pytest.fixture
def unreachable_download(tmp_path, monkeypatch):
    """Point the release URL at a closed local port and the hub cache at an empty folder.

    So the test means the same on a machine with internet: it never downloads 400 MB.
    """
    import detoxify.detoxify

    url = "https://127.0.0.1:9/unitaryai/toxic_original-c1212f89.ckpt"
    monkeypatch.setitem(detoxify.detoxify.MODEL_URLS, "original", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return url


def test_missing_weights_say_which_model_where_and_how_to_fix(unreachable_download, tmp_path):
    started = time.monotonic()
    with pytest.raises(MonitorLoadError) as info:
        detoxify_monitor.create(MonitorSpec(name="detoxify", id="tox", model_type="original"))
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert "'tox'" in message and "'original'" in message
    assert unreachable_download in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "toxic_original-c1212f89.ckpt") in message
    assert "checkpoint:" in message and "config_path:" in message


def test_a_blackholed_download_host_fails_within_the_probe_timeout(monkeypatch, tmp_path):
    import detoxify.detoxify

    # TEST-NET-1 (RFC 5737) is never routed: a connect either fails at once or times out.
    monkeypatch.setitem(detoxify.detoxify.MODEL_URLS, "unbiased", "https://192.0.2.1/unbiased.ckpt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(MonitorLoadError, match="unreachable"):
        detoxify_monitor.create(MonitorSpec(name="detoxify", model_type="unbiased", download_probe_timeout_s=0.3))
    assert time.monotonic() - started < 5


def test_bad_paths_and_options_are_load_errors(tiny_checkpoint, tmp_path):
    checkpoint, config_dir = tiny_checkpoint
    with pytest.raises(MonitorLoadError, match="does not exist"):
        detoxify_monitor.create(MonitorSpec(name="detoxify", checkpoint=str(tmp_path / "none.ckpt")))
    with pytest.raises(MonitorLoadError, match="is not a folder"):
        detoxify_monitor.create(
            MonitorSpec(name="detoxify", checkpoint=str(checkpoint), config_path=str(tmp_path / "none"))
        )
    with pytest.raises(MonitorLoadError, match="model_type"):
        detoxify_monitor.create(MonitorSpec(name="detoxify", model_type="huge"))
    with pytest.raises(MonitorLoadError, match="chekpoint"):
        detoxify_monitor.create(MonitorSpec(name="detoxify", chekpoint=str(checkpoint)))


def test_a_corrupt_checkpoint_is_a_load_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(MonitorLoadError, match=f"failed to load checkpoint {bad}"):
        detoxify_monitor.create(MonitorSpec(name="detoxify", checkpoint=str(bad)))


def test_builder_cli_prints_the_config_keys(tmp_path, capsys):
    from loadtest import tiny_detoxify

    tiny_detoxify.main([str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert f"checkpoint: {tmp_path / 'cli' / 'detoxify.ckpt'}" in out
    assert f"config_path: {tmp_path / 'cli' / 'hf-config'}" in out


def test_every_word_of_the_builder_vocabulary_scores(monitor):
    # A duplicate vocabulary entry once pushed "love" and "kill" past the embedding table.
    findings = monitor.check(["I love you", "How do I kill a zombie process?"])
    assert all(0.0 <= finding.score <= 1.0 for finding in findings)


def test_a_stream_is_judged_in_groups_of_words():
    from monitors.builtin.detoxify_monitor import DetoxifyMonitor

    monitor = DetoxifyMonitor(model=None, check_chars=10)
    assert monitor.hold("you are") == 0  # 4 complete characters: wait for more
    assert monitor.hold("you are an idio") == 11  # 11 complete: judge them, hold "idio"
    assert monitor.hold("you are an idiot and", start=11) == 11  # 6 new: wait
    assert monitor.hold("you are an idiot and more ", start=11) == 26
    every_word = DetoxifyMonitor(model=None, check_chars=0)
    assert every_word.hold("you are") == 4
