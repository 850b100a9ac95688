import argparse

import pytest

from gateway.cli import SUBCOMMANDS, build_parser, main


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_explains_its_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: taxgate " + command in capsys.readouterr().out
    assert _undocumented(_subcommands(build_parser())[command]) == []


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)), {})


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Flags without help, in the parser and its own subcommands (``bench monitors``)."""
    missing = [action.dest for action in parser._actions if action.help is None]
    for name, child in _subcommands(parser).items():
        missing += [f"{name} {dest}" for dest in _undocumented(child)]
    return missing


def test_nested_subcommands_are_checked_too():
    assert "monitors" in _subcommands(_subcommands(build_parser())["bench"])


def test_serve_with_a_bad_config_names_the_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("upstreams: [http://127.0.0.1:9]\ntimeouts: {conect_s: 1}\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "timeouts.conect_s" in capsys.readouterr().err


def test_serve_ends_on_what_to_fix_when_a_monitor_cannot_load(tmp_path, capsys):
    config = tmp_path / "monitors.yaml"
    config.write_text(
        "upstreams: [http://127.0.0.1:9]\nport: 0\naudit: {enabled: false}\nmonitors: [{name: blocklist, id: words}]\n"
    )
    assert main(["serve", "--config", str(config)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("taxgate serve: cannot start: monitor 'words': blocklist is empty")


def test_serve_refuses_two_monitors_with_one_id(tmp_path, capsys):
    # The pipeline owns the rule (metrics and audit events tell monitors apart by id).
    config = tmp_path / "twice.yaml"
    config.write_text(
        "upstreams: [http://127.0.0.1:9]\nport: 0\naudit: {enabled: false}\n"
        "monitors: [{name: pii}, {name: pii, action: redact}]\n"
    )
    assert main(["serve", "--config", str(config)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "taxgate serve: cannot start: monitor ids must be unique; repeated: pii (set `id:` to tell them apart)"
    )
