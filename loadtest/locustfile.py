"""A Locust user for OpenAI-compatible LLM servers: streaming chat from a labelled dataset.

Each request is a streamed ``/v1/chat/completions`` call (``--route responses``: a
streamed ``/v1/responses`` call, the OpenAI Responses API) with a prompt drawn from the
dataset; the user times every SSE chunk (definitions as `vllm bench serve`: see
``loadtest/bench/streamtiming.py``) and reports, besides Locust's own row for the
HTTP request (time to response headers), these samples:

- ``LLM ttft``  time to the first generated text, one per request;
- ``LLM itl``   inter-token latency: the mean gap per request (``--itl-events every``
  reports every gap instead, which costs CPU at high token rates; ``none`` skips it);
- ``LLM e2e``   request sent -> stream finished; "size" column = output tokens;
- ``LLM blocked`` requests a gateway refused (HTTP 400 ``content_blocked``) or cut
  (``finish_reason: content_filter``): not failures, the monitor did its job.

With ``--samples-out FILE`` (or env ``TAXGATE_SAMPLES_OUT``) every request is also
appended to FILE as one JSON line (start, status, ttft_s, itls_s: every gap, e2e_s,
output_tokens, error, blocked): the exact data ``taxgate bench`` computes percentiles
from, since Locust's own percentiles are rounded.

Run it (from the repository root, or with taxgate installed)::

    # web UI on :8089, against a gateway or straight at vLLM
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080
    # headless: 16 users for 60 s, benign prompts, 128 output tokens each
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --headless \\
        -u 16 -r 16 --run-time 60s --max-tokens 128 --labels benign \\
        --samples-out samples.jsonl
    # distributed: one master, N workers (same machine or others with this checkout);
    # the master forwards these custom options to the workers
    locust -f loadtest/locustfile.py --master --host http://gw:8080 --expect-workers 4 ...
    locust -f loadtest/locustfile.py --worker --master-host MASTER_IP   # x 4

Options (also in the web UI): ``--dataset`` JSONL with ``text``/``label`` (default: the
bundled one), ``--labels`` comma list or ``all`` (default ``benign``: the tax is paid by
legitimate traffic), ``--model`` (default: the first of ``GET /v1/models``),
``--max-tokens``, ``--no-ignore-eos`` (by default every request generates exactly
max-tokens, as in vLLM's benchmarks), ``--route`` (``chat``, the default, or
``responses``: TTFT at the first ``response.output_text.delta``, output tokens from the
final Response's usage), ``--api-key``, ``--prompt-seed``, ``--stagger-s``
(each user starts within a random 0..S s, so users started together do not run in
lockstep), ``--max-requests`` (end once that many requests were answered).

Each sample line also names the user that sent it (``user``), so a closed loop's
throughput can be taken from each user's request-to-request cycles.
``taxgate bench`` runs this same user class in one long-lived process
(``loadtest/bench/driver.py``) instead of one ``locust`` per round.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gevent
from gevent.event import AsyncResult
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner

try:
    import loadtest  # noqa: F401
except ModuleNotFoundError:
    # Locust puts the working directory on sys.path; this makes the file also work when
    # started from elsewhere in a checkout where taxgate is not pip-installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.bench.routes import CHAT, PATHS, ROUTES, request_body  # noqa: E402
from loadtest.bench.samples import Sample, SampleWriter  # noqa: E402
from loadtest.bench.streamtiming import StreamTimer  # noqa: E402
from loadtest.datasets import load_dataset  # noqa: E402
from loadtest.harness import discover_model  # noqa: E402


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    # On the parser itself, not a group: Locust's web UI options (is_secret) only work there.
    group = parser
    group.add_argument("--dataset", default="", help="JSONL file or folder (text, label); default: the bundled one")
    group.add_argument("--labels", default="benign", help="comma-separated labels, or 'all'")
    group.add_argument("--model", default="", help="model name; default: first of GET /v1/models")
    group.add_argument("--max-tokens", type=int, default=128, help="max_tokens per request")
    group.add_argument(
        "--route",
        choices=list(ROUTES),
        default=CHAT,
        help="chat: streamed /v1/chat/completions (default); responses: streamed /v1/responses",
    )
    group.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        default=True,
        help="let the model stop early (default: always generate max-tokens)",
    )
    group.add_argument("--api-key", default="", is_secret=True, help="sent as a Bearer token")
    group.add_argument("--prompt-seed", type=int, default=0, help="seed of the prompt order")
    group.add_argument(
        "--itl-events",
        choices=["mean", "every", "none"],
        default="mean",
        help="ITL samples for Locust's table: per-request mean, every gap, none",
    )
    group.add_argument(
        "--samples-out", default="", env_var="TAXGATE_SAMPLES_OUT", help="append one JSON line per request to this file"
    )
    group.add_argument(
        "--stagger-s",
        type=float,
        default=0.0,
        help="each user waits a random 0..S s before its first request, so "
        "users started together do not stay in lockstep (default 0)",
    )
    group.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="end the test once this many requests were sent and answered, "
        "counted per Locust process (default 0: run for --run-time)",
    )


class Workload:
    """What every user of one test run shares: prompts, model, request template, sink."""

    def __init__(self, options, host: str) -> None:
        labels = None if options.labels in ("", "all") else options.labels.split(",")
        items = load_dataset(options.dataset or None, labels=labels)
        if not items:
            raise ValueError(f"no dataset items with labels {options.labels!r}")
        self.prompts = [item.text for item in items]
        self.model = options.model or discover_model(host, api_key=options.api_key)
        self.max_tokens = options.max_tokens
        self.route = options.route
        self.path = PATHS[options.route]
        self.ignore_eos = options.ignore_eos
        self.itl_events = options.itl_events
        self.seed = options.prompt_seed
        self.headers = {"Accept-Encoding": "identity", "Accept": "text/event-stream"}
        if options.api_key:
            self.headers["Authorization"] = f"Bearer {options.api_key}"
        self.writer = SampleWriter(options.samples_out) if options.samples_out else None
        self.stagger_s = max(options.stagger_s, 0.0)
        self.max_requests = max(options.max_requests, 0)
        self.started = 0
        self.finished = 0
        self.sending = True
        self._user_ids = itertools.count()
        # Set by taxgate bench's Locust workers (loadtest/bench/locustworker.py): the master
        # numbers the users of all workers as one process would (first_user: this worker's
        # first number, known once every worker has spawned), and a worker whose quota is
        # answered reports to the master (when_done) instead of quitting the whole test.
        self.first_user: AsyncResult | None = None
        self.when_done: Callable[[], None] | None = None

    def next_user(self, worker_index: int) -> tuple[int, random.Random]:
        # Distinct, repeatable prompt orders per user (and per worker when distributed).
        user = next(self._user_ids)
        if self.first_user is not None:
            user += self.first_user.get()
            worker_index = 0  # the same prompts as one process sends (taxgate bench)
        return user, random.Random(f"{self.seed}:{worker_index}:{user}")

    def may_start(self) -> bool:
        """Whether another request may start (--max-requests not reached, still sending)."""
        if not self.sending or (self.max_requests and self.started >= self.max_requests):
            return False
        self.started += 1
        return True

    def answered(self) -> bool:
        """Count an answered request; True when it was the last one the test will send."""
        self.finished += 1
        return self._done()

    def stop_sending(self) -> bool:
        """Start no new request (time is up); True when none is in flight any more."""
        self.sending = False
        return self.finished >= self.started

    def _done(self) -> bool:
        quota_met = bool(self.max_requests) and self.started >= self.max_requests
        return (quota_met or not self.sending) and self.finished >= self.started

    def body(self, prompt: str) -> dict:
        return request_body(self.route, self.model, prompt, self.max_tokens, stream=True, ignore_eos=self.ignore_eos)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users; workers build their own workload
    previous = getattr(environment, "taxgate_workload", None)
    if previous is not None:
        previous.close()
    environment.taxgate_workload = Workload(environment.parsed_options, environment.host)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    workload = getattr(environment, "taxgate_workload", None)
    if workload is not None:
        workload.close()
        environment.taxgate_workload = None


class LLMUser(FastHttpUser):
    """One client in a closed loop: send a streamed request, read it to the end, repeat.

    FastHttpUser (geventhttpclient) over HttpUser (requests): same timings against a
    local SSE server, ~10% less CPU per chunk at 64 users, so the load generator
    saturates later.
    """

    wait_time = constant(0)
    network_timeout = 600.0  # long generations on CPU-only vLLM take minutes

    def on_start(self) -> None:
        self.workload: Workload = self.environment.taxgate_workload
        worker = getattr(self.environment.runner, "worker_index", 0)
        self.user_id, self.rng = self.workload.next_user(worker)
        if self.workload.stagger_s:
            gevent.sleep(self.rng.uniform(0.0, self.workload.stagger_s))

    @task
    def ask(self) -> None:
        workload = self.workload
        if not workload.may_start():
            raise StopUser()
        prompt = self.rng.choice(workload.prompts)
        started_at = time.time()
        t0 = time.perf_counter()
        with self.client.post(
            workload.path,
            json=workload.body(prompt),
            headers=workload.headers,
            stream=True,
            catch_response=True,
            name=f"{workload.route} (headers)",
        ) as response:
            status = response.status_code
            if status != 200:
                sample = self._refused(response, started_at, t0)
            else:
                sample = self._read_stream(response, started_at, t0)
            if sample.error is not None:
                response.failure(sample.error)
            else:
                response.success()
        self._report(sample)
        if workload.answered():
            # From another greenlet: quit() kills every user, this one included.
            gevent.spawn(workload.when_done or self.environment.runner.quit)

    def _read_stream(self, response, started_at: float, t0: float) -> Sample:
        timer = StreamTimer(route=self.workload.route)
        # Public iter_content() blocks until a whole read buffer fills, which would delay
        # every chunk; the underlying response's readline() returns each SSE line as it lands.
        raw = response._response
        try:
            while line := raw.readline(b"\n"):
                timer.feed(line, time.perf_counter() - t0)
        except (OSError, http.client.HTTPException) as exc:
            timer.result.error = f"stream broken: {exc!r}"
        return Sample.from_stream(started_at, 200, timer.finish(), user=self.user_id)

    def _refused(self, response, started_at: float, t0: float) -> Sample:
        elapsed = time.perf_counter() - t0
        if response.status_code == 0:  # connection refused/reset: no HTTP answer at all
            error = f"connection error: {getattr(response, 'error', 'unknown')!r}"
            return Sample(started_at, 0, None, elapsed, (), 0, error=error, user=self.user_id)
        code, message = _error_of(response.text)
        if response.status_code == 400 and code == "content_blocked":
            return Sample(started_at, 400, None, elapsed, (), 0, blocked=True, user=self.user_id)
        error = f"HTTP {response.status_code}: {message or code or 'no error body'}"[:300]
        return Sample(started_at, response.status_code, None, elapsed, (), 0, error=error, user=self.user_id)

    def _report(self, sample: Sample) -> None:
        workload = self.workload
        if workload.writer is not None:
            workload.writer.write(sample)
        fire = self.environment.events.request.fire
        if sample.blocked:
            fire(
                request_type="LLM",
                name="blocked",
                response_time=(sample.e2e_s or 0) * 1000,
                response_length=0,
                exception=None,
                context={},
            )
            return
        if not sample.ok:
            return  # already a failure on the "<route> (headers)" row
        tokens = sample.output_tokens
        fire(
            request_type="LLM",
            name="ttft",
            response_time=sample.ttft_s * 1000,
            response_length=tokens,
            exception=None,
            context={},
        )
        if sample.itls_s and workload.itl_events != "none":
            gaps = sample.itls_s if workload.itl_events == "every" else (sum(sample.itls_s) / len(sample.itls_s),)
            for gap in gaps:
                fire(
                    request_type="LLM",
                    name="itl",
                    response_time=gap * 1000,
                    response_length=0,
                    exception=None,
                    context={},
                )
        fire(
            request_type="LLM",
            name="e2e",
            response_time=(sample.e2e_s or 0) * 1000,
            response_length=tokens,
            exception=None,
            context={},
        )


def _error_of(body: str | bytes | None) -> tuple[str, str]:
    """(code, message) of an OpenAI-shaped error body; empty strings when it is not one."""
    try:
        error = json.loads(body or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        return "", str(body)[:200]
    if not isinstance(error, dict):
        return "", str(error)
    return str(error.get("code") or ""), str(error.get("message") or "")
