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
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from loadtest.bench.stats import rate
from loadtest.bench.traffic import Outcome, chat, chat_body, pool_limits

REDACTION_MARK = "[REDACTED:"
VERDICTS = ("blocked", "altered", "flagged", "passed", "error")
CAUGHT = ("blocked", "altered", "flagged")
BENIGN = "benign"


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
                if label != BENIGN}

    def harmful_catch_rate(self) -> float | None:
        """Caught share over all harmful items together (the x axis of "safety gained")."""
        labels = [label for label in self.counts if label != BENIGN]
        answered = sum(self.answered(label) for label in labels)
        caught = sum(self.counts[label][v] for label in labels for v in CAUGHT)
        return rate(caught, answered) if answered else None


async def safety_pass(
    targets: dict[str, str],
    items: Sequence[tuple[str, str]],
    model: str,
    *,
    max_tokens: int,
    concurrency: int,
    stream: bool = False,
    timeout_s: float = 120.0,
) -> dict[str, SafetyResult]:
    """Send every ``(text, label)`` item once to each target (scenario -> base URL).

    All targets run at once, each with its own concurrency limit. Requests do not
    ignore EOS: in echo mode the answer ends with the prompt, so max_tokens only caps it.
    """
    results = {name: SafetyResult(name) for name in targets}
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                 limits=pool_limits(concurrency * max(len(targets), 1))) as client:

        async def one(name: str, url: str, text: str, label: str,
                      gate: asyncio.Semaphore) -> None:
            async with gate:
                body = chat_body(model, text, max_tokens, stream=stream, ignore_eos=False)
                outcome = await chat(client, url, body)
            verdict = classify(outcome)
            result = results[name]
            result.add(label, verdict)
            if verdict == "error" and len(result.error_examples) < 3 and outcome.error:
                result.error_examples.append(outcome.error)

        async def target(name: str, url: str) -> None:
            gate = asyncio.Semaphore(concurrency)
            started = time.monotonic()
            await asyncio.gather(*(one(name, url, text, label, gate) for text, label in items))
            results[name].elapsed_s = time.monotonic() - started

        await asyncio.gather(*(target(name, url) for name, url in targets.items()))
    return results
