"""``taxgate sim`` flags and the settings they build."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from loadtest.sim.cli import configure_parser, settings_from_args
from loadtest.sim.settings import SimSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults_match_the_settings_defaults():
    settings = settings_from_args(parse())
    assert settings == SimSettings()
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 8000, "sim-llama-8b")


def test_every_flag_reaches_the_settings():
    settings = settings_from_args(
        parse(
            "--host",
            "0.0.0.0",
            "--port",
            "9001",
            "--profile",
            "tiny-cpu",
            "--output-mode",
            "corpus",
            "--corpus",
            "x.jsonl",
            "--max-num-seqs",
            "3",
            "--seed",
            "9",
            "--model",
            "m",
            "--max-model-len",
            "512",
        )
    )
    assert settings == SimSettings(
        host="0.0.0.0",
        port=9001,
        profile="tiny-cpu",
        output_mode="corpus",
        corpus_path=Path("x.jsonl"),
        max_num_seqs=3,
        seed=9,
        model="m",
        max_model_len=512,
    )
    assert settings.latency_profile().max_num_seqs == 3


def test_every_flag_has_help():
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert all(action.help for action in parser._actions)


def test_unknown_profile_is_a_usage_error():
    with pytest.raises(SystemExit):
        parse("--profile", "gpt-5")


@pytest.mark.parametrize(
    "overrides", [{"profile": "nope"}, {"output_mode": "poetry"}, {"max_num_seqs": 0}, {"model": ""}]
)
def test_settings_reject_nonsense(overrides):
    with pytest.raises(ValueError):
        SimSettings(**overrides)
