"""The safety effect of a monitor set: what it catches, and what it wrongly blocks or alters.

Every dataset item goes once through the set's gateway. With the simulator in echo
mode the output is the prompt itself, so output-stage monitors see the same labelled
text as input-stage ones. Each answer is judged by what the client sees:

- ``blocked``: HTTP 400 ``content_blocked`` (input) or ``finish_reason: content_filter``;
- ``altered``: the text carries a ``[REDACTED:LABEL]`` mark;
- ``flagged``: the ``x-taxgate-flags`` header lists an annotation (the text is untouched);
- ``passed``: none of these; ``error``: no usable answer (left out of the rates).

Catch rate of a harmful label = (blocked + altered + flagged) / answered items;
on benign items the same three shares are the false block / alter / flag rates.
Each rate comes with its Wilson 95 % interval and item count. With several datasets
(``--dataset`` repeated) labels are ``NAME/label``, so each set's rates stay apart;
the pooled false rates are over every benign label.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from loadtest.bench.routes import CHAT, request_body
from loadtest.bench.stats import rate, wilson
from loadtest.bench.traffic import Outcome, ask, pool_limits
from loadtest.datasets import DatasetSpec, load_dataset

REDACTION_MARK = "[REDACTED:"
VERDICTS = ("blocked", "altered", "flagged", "passed", "error")
CAUGHT = ("blocked", "altered", "flagged")
BENIGN = "benign"


def is_benign(label: str) -> bool:
    return label == BENIGN or label.endswith("/" + BENIGN)


def safety_items(datasets: Sequence[DatasetSpec]) -> list[tuple[str, str]]:
    """``(text, label)`` of every dataset; labels are ``NAME/label`` when there are several."""
    if not datasets:
        return [(i.text, i.label) for i in load_dataset(None)]
    if len(datasets) == 1:
        return [(i.text, i.label) for i in datasets[0].load()]
    names = [spec.name for spec in datasets]
    if len(set(names)) < len(names):
        raise ValueError(f"two datasets are named alike ({', '.join(names)}); name them NAME=PATH")
    return [(i.text, f"{spec.name}/{i.label}") for spec in datasets for i in spec.load()]


def classify(outcome: Outcome) -> str:
    if outcome.status == 400 and outcome.error_code == "content_blocked":
        return "blocked"
    if outcome.status == 200 and outcome.finish_reason == "content_filter":
        return "blocked"
    if outcome.status != 200 or outcome.error is not None:
        return "error"
    if REDACTION_MARK in outcome.text:
        return "altered"
    if outcome.flags.strip():
        return "flagged"
    return "passed"


@dataclass
class SafetyResult:
    """Verdict counts per dataset label for one monitor set."""

    scenario: str
    counts: dict[str, Counter] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, verdict: str) -> None:
        self.counts.setdefault(label, Counter())[verdict] += 1

    def answered(self, label: str) -> int:
        counts = self.counts.get(label, Counter())
        return sum(counts[v] for v in VERDICTS if v != "error")

    def share(self, label: str, verdicts: Sequence[str]) -> float | None:
        """Share of answered items of ``label`` with one of ``verdicts``; None if none answered."""
        answered = self.answered(label)
        if answered == 0:
            return None
        counts = self.counts[label]
        return rate(sum(counts[v] for v in verdicts), answered)

    @property
    def n(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def errors(self) -> int:
        return sum(c["error"] for c in self.counts.values())

    def catch_rates(self) -> dict[str, float | None]:
        return {label: self.share(label, CAUGHT) for label in sorted(self.counts)
                if not is_benign(label)}

    def benign_share(self, verdicts: Sequence[str]) -> float | None:
        """Share of answered benign items (all benign labels pooled) with one of ``verdicts``."""
        labels = [label for label in self.counts if is_benign(label)]
        answered = sum(self.answered(label) for label in labels)
        hits = sum(self.counts[label][v] for label in labels for v in verdicts)
        return rate(hits, answered) if answered else None

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Wilson 95 % interval per label: of the caught share, or of block + alter on benign."""
        out = {}
        for label in sorted(self.counts):
            verdicts = ("blocked", "altered") if is_benign(label) else CAUGHT
            out[label] = wilson(sum(self.counts[label][v] for v in verdicts), self.answered(label))
        return out

    def harmful_catch_rate(self) -> float | None:
        """Caught share over all harmful items together (the x axis of "safety gained")."""
        labels = [label for label in self.counts if not is_benign(label)]
        answered = sum(self.answered(label) for label in labels)
        caught = sum(self.counts[label][v] for label in labels for v in CAUGHT)
        return rate(caught, answered) if answered else None


Item = tuple[str, str]  # (text, label)


@dataclass(frozen=True)
class SafetyJob:
    """The items to send through one monitor set's gateway."""

    scenario: str
    base_url: str
    items: Sequence[Item]
    note: str = ""  # e.g. why only a sample is sent; carried into the result


def stratified_sample(items: Sequence[Item], per_label: int, rng: random.Random) -> list[Item]:
    """Up to ``per_label`` items of each label, drawn with ``rng`` (repeatable)."""
    by_label: dict[str, list[Item]] = {}
    for item in items:
        by_label.setdefault(item[1], []).append(item)
    sample: list[Item] = []
    for label in sorted(by_label):
        group = by_label[label]
        sample += rng.sample(group, min(per_label, len(group)))
    return sample


async def safety_pass(
    jobs: Sequence[SafetyJob],
    model: str,
    *,
    max_tokens: int,
    concurrency: int,
    stream: bool = False,
    timeout_s: float = 120.0,
    route: str = CHAT,
    auth: httpx.Auth | None = None,  # the --target keys
) -> dict[str, SafetyResult]:
    """Send each job's ``(text, label)`` items once through its gateway.

    All jobs run at once, each with its own concurrency limit. Requests do not
    ignore EOS: in echo mode the answer ends with the prompt, so max_tokens only caps it.
    """
    results = {job.scenario: SafetyResult(job.scenario, notes=[job.note] if job.note else [])
               for job in jobs}
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                 limits=pool_limits(concurrency * max(len(jobs), 1)),
                                 auth=auth) as client:

        async def one(name: str, url: str, text: str, label: str,
                      gate: asyncio.Semaphore) -> None:
            async with gate:
                body = request_body(route, model, text, max_tokens, stream=stream,
                                    ignore_eos=False)
                outcome = await ask(client, url, body, route)
            verdict = classify(outcome)
            result = results[name]
            result.add(label, verdict)
            if verdict == "error" and len(result.error_examples) < 3 and outcome.error:
                result.error_examples.append(outcome.error)

        async def run_job(job: SafetyJob) -> None:
            gate = asyncio.Semaphore(concurrency)
            started = time.monotonic()
            await asyncio.gather(*(one(job.scenario, job.base_url, text, label, gate)
                                   for text, label in job.items))
            results[job.scenario].elapsed_s = time.monotonic() - started

        await asyncio.gather(*(run_job(job) for job in jobs))
    return results
