import pytest

from loadtest.bench.soak_outcomes import (
    CLIENT_LEFT_EARLY,
    OK,
    UNFINISHED,
    GatewayCounters,
    GatewayResult,
    classify_stream,
    classify_whole,
    parse_counters,
    rss_bytes,
    stream_finished,
    verdict,
)

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
ERROR = b'data: {"error":{"message":"m","type":"upstream_error","param":null,"code":"bad_gateway"}}\n\n'
DONE = b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    "status, body, outcome",
    [
        (200, CHUNK + DONE, OK),
        (200, CHUNK + ERROR, "stream error bad_gateway"),
        (200, CHUNK.replace(b"\n\n", b"\r\n\r\n") + DONE, OK),
        (200, CHUNK, UNFINISHED),
        (200, b"", "undefined: 200 stream with no event"),
        (200, CHUNK + b"data: {not json\n\n", "undefined: stream event that is not JSON"),
        (200, b"<html>oops</html>\n\n", "undefined: stream event that is not SSE data"),
        (200, DONE + CHUNK, "undefined: events after [DONE]"),
        (200, ERROR + CHUNK + DONE, "undefined: events after an error"),
        (503, b'{"error":{"message":"m","type":"server_error","code":"overloaded"}}', "503 overloaded"),
        (500, b"Internal Server Error", "undefined: 500 without an OpenAI error body"),
    ],
)
def test_stream_outcomes(status, body, outcome):
    assert classify_stream(status, body) == outcome


@pytest.mark.parametrize(
    "status, body, outcome",
    [
        (200, b'{"choices":[]}', OK),
        (200, b"<html>", "undefined: 200 whose body is not JSON"),
        (200, b'{"choices":null}', "undefined: 200 that is not a completion"),
        (200, b"[1]", "undefined: 200 that is not a completion"),
        (
            400,
            b'{"error":{"message":"m","type":"invalid_request_error","code":"content_blocked"}}',
            "400 content_blocked",
        ),
        (502, b'{"error":"nope"}', "undefined: 502 without an OpenAI error body"),
        (502, b'{"error":{"message":"m","type":"upstream_error","code":null}}', "502 upstream_error"),
    ],
)
def test_whole_outcomes(status, body, outcome):
    assert classify_whole(status, body) == outcome


def test_a_finished_stream_is_no_disconnect():
    assert stream_finished(CHUNK + DONE) and stream_finished(CHUNK + ERROR)
    assert not stream_finished(CHUNK)


METRICS = """\
# TYPE taxgate_in_flight_requests gauge
taxgate_in_flight_requests 2.0
# TYPE taxgate_requests_total counter
taxgate_requests_total{model="m",route="chat",status="200"} 5.0
taxgate_requests_total{model="m",route="completions",status="200"} 1.0
taxgate_requests_total{model="unknown",route="other",status="404"} 2.0
# TYPE taxgate_upstream_errors_total counter
taxgate_upstream_errors_total{kind="midstream",upstream="http://a"} 3.0
# TYPE taxgate_monitor_errors_total counter
taxgate_monitor_errors_total{kind="timeout",monitor="pii",stage="output"} 1.0
# TYPE taxgate_client_disconnects_total counter
taxgate_client_disconnects_total{route="chat"} 4.0
"""


def test_gateway_counters_from_metrics():
    counters = parse_counters(METRICS)
    assert counters.in_flight == 2 and counters.requests_total == 8
    assert counters.requests == {"200": 6, "404": 2}
    assert counters.upstream_errors == {"midstream": 3}
    assert counters.monitor_errors == {"pii/output/timeout": 1}
    assert counters.client_disconnects == 4


def test_rss_from_proc_status():
    assert rss_bytes("Name:\tpython\nVmRSS:\t  2048 kB\n") == 2 * 2**20
    with pytest.raises(ValueError):
        rss_bytes("Name: x\n")


def result(**changes) -> GatewayResult:
    counters = GatewayCounters(requests={"200": 10})
    base = dict(
        name="raw",
        outcomes={OK: 10},
        counters=counters,
        rss_start=100 * 2**20,
        rss_end=110 * 2**20,
        rss_peak=120 * 2**20,
    )
    return GatewayResult(**{**base, **changes})


def test_verdict_holds_and_names_every_failure():
    assert verdict(result(), 50) == []
    leaked = GatewayCounters(in_flight=1, requests={"200": 9, "500": 1})
    failures = verdict(result(outcomes={OK: 9, UNFINISHED: 2}, counters=leaked, rss_end=200 * 2**20), 50)
    assert len(failures) == 5
    text = "\n".join(failures)
    for part in (
        "1 in-flight slot(s) leaked",
        "2 undefined",
        "RSS grew 100.0 MB",
        "counted 10 requests, the clients sent 11 (0 left",
        "1 request(s) counted as 500",
    ):
        assert part in text


def test_requests_that_left_within_milliseconds_may_be_missing_from_the_count():
    outcomes = {OK: 8, CLIENT_LEFT_EARLY: 2}
    for counted in (8, 9, 10):
        counters = GatewayCounters(requests={"200": counted})
        assert verdict(result(outcomes=outcomes, counters=counters), 50) == []
    for counted in (7, 11):
        counters = GatewayCounters(requests={"200": counted})
        assert "the gateway counted" in verdict(result(outcomes=outcomes, counters=counters), 50)[0]
