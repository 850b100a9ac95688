import pytest

from gateway.cli import SUBCOMMANDS, build_parser, main


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_explains_its_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage: taxgate " + command in help_text
    # Every option line carries an explanation (argparse prints flags alone otherwise).
    options = [line for line in help_text.splitlines() if line.strip().startswith("--")]
    assert options


def test_serve_with_a_bad_config_names_the_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("upstreams: [http://127.0.0.1:9]\ntimeouts: {conect_s: 1}\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "timeouts.conect_s" in capsys.readouterr().err
