"""What a soak judges, as pure functions: each answer's outcome, the gateway's counters,
and the verdict. ``loadtest.soak`` does the I/O.

Every answer must be *defined* (DESIGN.md, Faults): a 200 that is a complete
completion, an OpenAI-shaped error with its status, or a stream that ends with
``[DONE]`` or with one error event. Anything else, a plain-text 500, a stream that
just stops, bytes that are not SSE, a connection the gateway cuts, is
``undefined`` and fails the soak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from prometheus_client.parser import text_string_to_metric_families

OK = "ok"
CLIENT_LEFT = "client disconnect mid-stream (on purpose)"
# A client that gives up on a whole answer within milliseconds may close before its
# request was even read: the gateway may count it, or never see it.
CLIENT_LEFT_EARLY = "client disconnect before a whole answer (on purpose)"
UNDEFINED = "undefined"
UNFINISHED = f"{UNDEFINED}: stream ended without [DONE] or an error event"


def _error_code(payload: object) -> str | None:
    """The ``code`` (or type) of an OpenAI error object, None if it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    error = payload["error"]
    if not isinstance(error.get("message"), str):
        return None
    return str(error.get("code") or error.get("type") or "no code")


def classify_error_status(status: int, body: bytes) -> str:
    try:
        code = _error_code(orjson.loads(body))
    except orjson.JSONDecodeError:
        code = None
    if code is None:
        return f"{UNDEFINED}: {status} without an OpenAI error body"
    return f"{status} {code}"


def classify_whole(status: int, body: bytes) -> str:
    if status != 200:
        return classify_error_status(status, body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{UNDEFINED}: 200 whose body is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        return f"{UNDEFINED}: 200 that is not a completion"
    return OK


def classify_stream(status: int, body: bytes) -> str:
    """A streamed answer, read to its end."""
    if status != 200:
        return classify_error_status(status, body)
    events = [block for block in body.replace(b"\r\n", b"\n").split(b"\n\n") if block.strip()]
    if not events:
        return f"{UNDEFINED}: 200 stream with no event"
    for index, block in enumerate(events):
        if not block.startswith(b"data: "):
            return f"{UNDEFINED}: stream event that is not SSE data"
        data = block[6:].strip()
        last = index == len(events) - 1
        if data == b"[DONE]":
            return OK if last else f"{UNDEFINED}: events after [DONE]"
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return f"{UNDEFINED}: stream event that is not JSON"
        code = _error_code(payload)
        if code is not None:
            return f"stream error {code}" if last else f"{UNDEFINED}: events after an error"
    return UNFINISHED


def stream_finished(body: bytes) -> bool:
    """Whether these stream bytes are a whole answer already (so leaving is no disconnect)."""
    return classify_stream(200, body) != UNFINISHED


@dataclass
class GatewayCounters:
    """What a gateway's ``/metrics`` says at one moment."""

    in_flight: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)  # by status
    upstream_errors: Counter[str] = field(default_factory=Counter)  # by kind
    monitor_errors: Counter[str] = field(default_factory=Counter)  # "monitor/stage/kind"
    client_disconnects: float = 0.0

    @property
    def requests_total(self) -> float:
        return sum(self.requests.values())


def parse_counters(text: str) -> GatewayCounters:
    counters = GatewayCounters()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "taxgate_in_flight_requests":
                counters.in_flight = value
            elif sample.name == "taxgate_requests_total":
                counters.requests[labels["status"]] += value
            elif sample.name == "taxgate_upstream_errors_total":
                counters.upstream_errors[labels["kind"]] += value
            elif sample.name == "taxgate_monitor_errors_total":
                key = f"{labels['monitor']}/{labels['stage']}/{labels['kind']}"
                counters.monitor_errors[key] += value
            elif sample.name == "taxgate_client_disconnects_total":
                counters.client_disconnects += value
    return counters


def rss_bytes(proc_status: str) -> int:
    """Resident set size from the text of ``/proc/<pid>/status``."""
    for line in proc_status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS line in /proc/<pid>/status")


@dataclass(frozen=True)
class GatewayResult:
    name: str
    outcomes: Mapping[str, int]
    counters: GatewayCounters
    rss_start: int  # after the warm-up
    rss_end: int
    rss_peak: int

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def undefined(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome.startswith(UNDEFINED))

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_start


def verdict(result: GatewayResult, max_rss_growth_mb: float) -> list[str]:
    """What failed, in words; empty when the gateway held."""
    failures = []
    if result.counters.in_flight != 0:
        failures.append(
            f"{result.name}: {result.counters.in_flight:g} in-flight slot(s) "
            "leaked (taxgate_in_flight_requests after the load ended)"
        )
    if result.undefined:
        failures.append(f"{result.name}: {result.undefined} undefined answer(s)")
    if result.rss_growth > max_rss_growth_mb * 2**20:
        failures.append(f"{result.name}: RSS grew {result.rss_growth / 2**20:.1f} MB (limit {max_rss_growth_mb:g} MB)")
    counted, early = result.counters.requests_total, result.outcomes.get(CLIENT_LEFT_EARLY, 0)
    if not result.sent - early <= counted <= result.sent:
        failures.append(
            f"{result.name}: the gateway counted {counted:g} requests, the "
            f"clients sent {result.sent} ({early} left within milliseconds)"
        )
    if result.counters.requests.get("500"):
        failures.append(f"{result.name}: {result.counters.requests['500']:g} request(s) counted as 500")
    return failures
