"""Endpoints the bench did not start (``--target NAME=URL``), measured as scenarios against ``direct``.

A target is any running OpenAI-compatible server: a deployed gateway, another gateway
product, a vLLM router. The bench sends it the same rounds as every other scenario,
but it cannot see inside it: its CPU is not sampled and its configuration is unknown.
When its ``/metrics`` shows a taxgate, the counters and histograms that matter for the
tax (monitor time, skipped checks, errors) are read before and after the rounds.

Before the rounds each target is probed (``GET /v1/models`` and one short request); one
that is unreachable, refuses, fails or serves another model is left out of the run with
a message saying why, and the report lists it as missing.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.bench import promscrape, schema
from loadtest.bench.matrix import Matrix
from loadtest.bench.routes import CHAT, request_body
from loadtest.bench.scenarios import Scenario, build_scenarios
from loadtest.bench.tax import DIRECT, GATEWAY
from loadtest.bench.traffic import ask

NONE_SETS = "none"  # --sets none: no gateway of the bench's own, only the targets
ENV_PREFIX = "env:"  # --target-key NAME=env:VAR reads the key from $VAR (a Kubernetes Secret)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
# Counters of a taxgate that say what it did not do, or did wrong, during the rounds.
COUNTERS = (
    "taxgate_monitor_skipped",
    "taxgate_monitor_errors",
    "taxgate_monitor_fail_open",
    "taxgate_upstream_errors",
    "taxgate_audit_dropped",
    "taxgate_requests",
)
UNKNOWN = (
    "its CPU (not a process of the bench: no gateway CPU columns, no gateway-bound flag)",
    "its configuration (monitors, streaming, workers, replicas, limits)",
    "which upstream it forwards to (the tax assumes the one --upstream names)",
    "its catch rates (the safety pass measures monitor sets in front of the bench's echo "
    "simulator, which cannot be put behind an endpoint the bench did not start)",
)


class TargetError(ValueError):
    """A ``--target``/``--target-key`` flag that cannot be used as given."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # base URL, without /v1
    api_key: str = field(default="", repr=False)

    def scenario(self) -> Scenario:
        return Scenario(self.name, f"already running at {self.url} (not started by the bench)", external_url=self.url)


def _split(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise TargetError(f"{flag} {text!r}: expected NAME={'KEY' if 'key' in flag else 'URL'}")
    return name.strip(), value.strip()


def _key(value: str, name: str, environ: Mapping[str, str]) -> str:
    if not value.startswith(ENV_PREFIX):
        return value
    variable = value.removeprefix(ENV_PREFIX)
    if not environ.get(variable):
        raise TargetError(f"--target-key {name}={value}: ${variable} is not set or empty")
    return environ[variable]


def parse_targets(
    pairs: Sequence[str], keys: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> tuple[Target, ...]:
    """``--target NAME=URL`` and ``--target-key NAME=KEY`` (or ``NAME=env:VAR``) flags."""
    environ = os.environ if environ is None else environ
    urls: dict[str, str] = {}
    for pair in pairs:
        name, url = _split(pair, "--target")
        if not _NAME.match(name) or name in (DIRECT, GATEWAY, NONE_SETS):
            raise TargetError(
                f"--target {pair!r}: NAME must be letters, digits, '.', '_' or '-' "
                f"and not {DIRECT}, {GATEWAY} or {NONE_SETS}"
            )
        if name in urls:
            raise TargetError(f"--target {name} is given twice")
        if not url.startswith(("http://", "https://")):
            raise TargetError(f"--target {pair!r}: URL must start with http:// or https://")
        urls[name] = url.rstrip("/").removesuffix("/v1")
    secrets: dict[str, str] = {}
    for pair in keys:
        name, value = _split(pair, "--target-key")
        if name not in urls:
            raise TargetError(f"--target-key {name}=...: no --target named {name!r}")
        secrets[name] = _key(value, name, environ)
    targets = tuple(Target(name, url, secrets.get(name, "")) for name, url in urls.items())
    _one_key_per_url(targets)
    return targets


def _one_key_per_url(targets: Sequence[Target]) -> None:
    # The bench's own requests (warm-up, probe, safety pass) find a target's key by its URL.
    keys: dict[str, tuple[str, str]] = {}
    for target in targets:
        name, key = keys.setdefault(target.url, (target.name, target.api_key))
        if key != target.api_key:
            raise TargetError(
                f"--target {name} and {target.name} have the same URL but not the "
                "same key: give one of them another URL to the same server "
                "(a host name and its IP address)"
            )


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with every ``--target-key`` value hidden (it lands in the report)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(_hidden(arg))
            hide_next = False
        elif arg == "--target-key":
            out.append(arg)
            hide_next = True
        elif arg.startswith("--target-key="):
            out.append("--target-key=" + _hidden(arg.removeprefix("--target-key=")))
        else:
            out.append(arg)
    return out


def _hidden(pair: str) -> str:
    name, _, value = pair.partition("=")
    return f"{name}={value}" if value.startswith(ENV_PREFIX) else f"{name}=***"


def with_targets(scenarios: list[Scenario], targets: Sequence[Target], sets: Sequence[str] | None) -> list[Scenario]:
    """The run's scenarios: the matrix's (only ``direct`` with ``--sets none``), then the targets."""
    if sets is not None and NONE_SETS in sets:
        if list(sets) != [NONE_SETS]:
            raise TargetError(f"--sets {NONE_SETS} runs no monitor set: do not name others with it")
        if not targets:
            raise TargetError(f"--sets {NONE_SETS} runs only the --target endpoints: give one")
        scenarios = [s for s in scenarios if s.name == DIRECT]
    taken = {s.name for s in scenarios}
    clash = [t.name for t in targets if t.name in taken]
    if clash:
        raise TargetError(f"--target {', '.join(clash)}: a monitor set of the matrix has that name; pick another")
    return scenarios + [t.scenario() for t in targets]


class TargetAuth(httpx.Auth):
    """Adds each target's bearer key to the requests the bench itself sends to it."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self._keys = [(t.url + "/", t.api_key) for t in targets if t.api_key]

    def auth_flow(self, request: httpx.Request):
        url = str(request.url)
        for base, key in self._keys:
            if url.startswith(base):
                request.headers["Authorization"] = f"Bearer {key}"
                break
        yield request


def _headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _models_problem(response: httpx.Response, target: Target, model: str) -> str | None:
    if response.status_code in (401, 403):
        return (
            f"refused the bench (HTTP {response.status_code} on GET /v1/models): give its "
            f"key with --target-key {target.name}=KEY"
        )
    if response.status_code != 200:
        return f"answered HTTP {response.status_code} to GET /v1/models"
    try:
        served = [m["id"] for m in response.json().get("data") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "GET /v1/models did not answer an OpenAI model list"
    if model not in served:
        return (
            f"serves {', '.join(served) or 'no model'}, not {model!r} (the run's model): it "
            "fronts another upstream than --upstream, or pass --model"
        )
    return None


async def probe(client: httpx.AsyncClient, target: Target, model: str, route: str = CHAT) -> str | None:
    """Why the target cannot be measured (None: it can): one model list and one request."""
    try:
        response = await client.get(target.url + "/v1/models", headers=_headers(target))
    except httpx.HTTPError as exc:
        return f"is unreachable at {target.url} ({type(exc).__name__}: {exc or 'no answer'})"
    problem = _models_problem(response, target, model)
    if problem:
        return problem
    body = request_body(route, model, "Say hello.", 2, stream=False, ignore_eos=False)
    outcome = await ask(client, target.url, body, route)
    if outcome.status != 200 and outcome.error_code != "content_blocked":
        return f"failed a test request: {outcome.error or f'HTTP {outcome.status}'}"
    return None


# --- /metrics ---------------------------------------------------------------------------

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def counters(text: str) -> Series:
    """The ``COUNTERS`` of a taxgate's /metrics text, by (family, sorted labels)."""
    found: Series = {}
    for family in text_string_to_metric_families(text):
        if family.name not in COUNTERS:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[(family.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def counter_deltas(before: Series, after: Series) -> list[tuple[str, dict[str, str], float]]:
    """``(counter, labels, increase)`` over the rounds; unchanged ones left out.

    Successful requests (``taxgate_requests`` with a 2xx status) are not news: only
    refused or failed ones are kept.
    """
    rows = []
    for key, value in sorted(after.items()):
        name, labels = key
        increase = value - before.get(key, 0.0)
        status = dict(labels).get("status", "")
        if increase <= 0 or (name == "taxgate_requests" and status.startswith("2")):
            continue
        rows.append((name + "_total", dict(labels), increase))
    return rows


def read_metrics(client: httpx.Client, target: Target) -> str | None:
    """The target's /metrics text when it is a taxgate's; None when it is not (or unreadable)."""
    try:
        response = client.get(target.url + "/metrics", headers=_headers(target))
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or "taxgate_" not in response.text:
        return None
    return response.text


# --- one run's targets --------------------------------------------------------------------


@dataclass
class TargetReport:
    """What the report says about one target: what the bench could not know, what it read."""

    target: Target
    taxgate: bool = False
    counters: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class TargetRun:
    """The targets of one run: probed before the rounds, their /metrics read around them."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = {t.name: t for t in targets}
        self.problems: dict[str, str] = {}
        self._before: dict[str, str | None] = {}
        self._after: dict[str, str | None] = {}

    @property
    def names(self) -> set[str]:
        return set(self.targets)

    def auth(self) -> TargetAuth:
        return TargetAuth(list(self.targets.values()))

    def probe(self, model: str, route: str = CHAT, timeout_s: float = 30.0) -> dict[str, str]:
        """Probe every target; the ones that fail are dropped. Returns name -> why."""

        async def all_probes() -> list[str | None]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), auth=self.auth()) as client:
                return await asyncio.gather(*(probe(client, t, model, route) for t in self.targets.values()))

        for target, problem in zip(list(self.targets.values()), asyncio.run(all_probes()), strict=True):
            if problem:
                self.problems[target.name] = f"--target {target.name} {problem}"
                del self.targets[target.name]
        return self.problems

    def urls(self) -> dict[str, str]:
        return {name: t.url for name, t in self.targets.items()}

    def keys(self) -> dict[str, str]:
        return {name: t.api_key for name, t in self.targets.items() if t.api_key}

    def read(self, after: bool) -> None:
        """Every target's /metrics (before the rounds, or after them)."""
        with httpx.Client(timeout=10.0) as client:
            texts = {name: read_metrics(client, t) for name, t in self.targets.items()}
        (self._after if after else self._before).update(texts)

    def metrics_texts(self) -> dict[str, tuple[str, str]]:
        """(before, after) /metrics text of each target that is a taxgate."""
        return {
            name: (self._before[name], self._after[name])
            for name in self.targets
            if self._before.get(name) and self._after.get(name)
        }

    def reports(self) -> list[TargetReport]:
        reports = []
        for name, target in self.targets.items():
            texts = self.metrics_texts().get(name)
            report = TargetReport(target, taxgate=texts is not None)
            if texts:
                report.counters = counter_deltas(counters(texts[0]), counters(texts[1]))
                report.notes.append(
                    "/metrics read before and after the rounds: one replica's view when several serve the URL"
                )
            else:
                report.notes.append(
                    "its /metrics is not a taxgate's (or not readable with its "
                    "key): no gateway-side timings or counters"
                )
            reports.append(report)
        return reports


def run_scenarios(matrix: Matrix, sets: Sequence[str] | None, targets: Sequence[Target]) -> list[Scenario]:
    """The run's scenarios: the matrix's chosen sets (none with ``--sets none``), the targets."""
    names = [] if NONE_SETS in (sets or ()) else matrix.select(list(sets or ()))
    return with_targets(build_scenarios(matrix, names), targets, sets)


def target_timings(run: TargetRun) -> dict[str, list[promscrape.Timing]]:
    """The gateway-side histogram means of each target that is a taxgate, over the rounds."""
    return {
        name: promscrape.timings_between(promscrape.parse(before), promscrape.parse(after))
        for name, (before, after) in run.metrics_texts().items()
    }


def target_rows(reports: Sequence[TargetReport]) -> list[schema.TargetRow]:
    return [
        schema.TargetRow(
            name=r.target.name,
            url=r.target.url,
            taxgate=r.taxgate,
            unknown=list(UNKNOWN),
            counters=[schema.CounterDelta(metric=m, labels=labels, increase=v) for m, labels, v in r.counters],
            notes=r.notes,
        )
        for r in reports
    ]
