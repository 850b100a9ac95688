"""``python -m loadtest.stream_cpu``: the by-hand CPU-per-token measurement runs end to end."""

from __future__ import annotations

import re

import pytest

from loadtest import stream_cpu

pytestmark = pytest.mark.integration


def test_measures_a_gateway_with_a_served_classifier(tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "streaming: {mode: stream_first}\naudit: {enabled: false}\nmonitors:\n"
        "  - {name: classifier, action: annotate, base_url: sim, model: sim-guard,\n"
        "     labels: [safe, unsafe], flag_labels: [unsafe]}\n"
    )
    assert stream_cpu.main([str(config), "--streams", "2", "--words", "30"]) == 0
    line = capsys.readouterr().out
    match = re.search(r"2 stream\(s\): (\d+) chunks, gateway CPU ([\d.]+) s = ([\d,]+) us per chunk", line)
    assert match, line
    assert int(match.group(1)) == 60  # every word of both answers arrived
    assert float(match.group(2)) > 0
