"""``taxgate bench soak`` end to end, briefly: simulator with faults, both gateways, the report."""

import json

import pytest

from gateway.cli import main

pytestmark = pytest.mark.integration


def test_a_short_soak_holds_and_reports(tmp_path, capsys):
    # Garbage included: a stream event that is not JSON must end the stream with an SSE
    # error event on the raw relay as on the monitored one, or the soak counts it undefined.
    code = main(
        [
            "bench",
            "soak",
            "--duration",
            "6",
            "--warmup",
            "1",
            "--concurrency",
            "4",
            "--fault-reset",
            "0.1",
            "--fault-stall",
            "0.05",
            "--fault-garbage",
            "0.1",
            "--disconnect",
            "0.1",
            "--profile",
            "tiny-cpu",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0, out
    assert report["failures"] == []
    assert report["injected_faults"]["reset"] > 0 and report["injected_faults"]["garbage"] > 0
    for gateway in report["gateways"]:
        assert gateway["requests"] > 0 and gateway["undefined"] == 0
        assert gateway["in_flight_end"] == 0
        early = gateway["outcomes"].get("client disconnect before a whole answer (on purpose)", 0)
        assert gateway["requests"] - early <= gateway["requests_counted"] <= gateway["requests"]
        assert gateway["rss_start_mb"] > 0
        assert gateway["e2e_ms"]["p50"] <= gateway["e2e_ms"]["p99"]
    assert "gateway raw" in out and "gateway monitored" in out and "held" in out
    assert (tmp_path / "report.md").read_text().startswith("# taxgate bench soak report")
