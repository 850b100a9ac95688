"""Catch and false-positive rates of the bench's monitor sets, scored in process (no servers).

    python -m loadtest.monitor_eval --dataset ~/.cache/taxgate/datasets/external/dev
    python -m loadtest.monitor_eval --dataset DIR --sets pii,blocklist --examples 5 --json out.json

Each set of the bench matrix is built through the monitor registry as the gateway
builds it, and every item is scored once as an input-stage prompt: an item is caught
when any of the set's monitors is hit at its own threshold (``pipeline.is_hit``) or,
for a redacting monitor, marks a span. That is what the gateway does with the whole
prompt; streamed outputs are judged per window and only the bench's safety pass
(``taxgate bench``) measures them. This tool exists so a monitor change can be judged
in seconds on the ``dev`` split before the bench confirms it on ``test``.

Every rate comes with its Wilson 95 % interval, per label and per source (the items'
``source`` field: a rate pooled over families hides the family a monitor misses). On
benign items a hit of any action counts as a false positive, each action also shown
apart: a monitor in ``annotate`` that flags every benign prompt blocks nothing, but its
false-positive rate is 100 %, not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench.matrix import load_matrix
from loadtest.bench.stats import wilson
from loadtest.datasets import Item, load_dataset
from monitors.base import AsyncMonitor, Finding, Monitor
from monitors.builtin.pii import PiiDetector
from monitors.config import MonitorSpec
from monitors.pipeline import is_hit
from monitors.registry import MonitorRegistry

SKIP_BY_DEFAULT = ("detoxify",)  # random weights in the bench: its scores mean nothing
EXAMPLE_CHARS = 100


def mask(text: str, detector: PiiDetector, limit: int = EXAMPLE_CHARS) -> str:
    """An example fit to print: personal data replaced by its kind, cut to ``limit`` chars."""
    spans = detector.find(text)
    out, last = [], 0
    for span in spans:
        if span.start < last:
            continue
        out += [text[last : span.start], f"[{span.label}]"]
        last = span.end
    out.append(text[last:])
    masked = " ".join("".join(out).split())
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


@dataclass
class SetResult:
    name: str
    caught: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    by_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    # Per label, items hit by a monitor of each action ("any": by any of them).
    by_action: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    false_positives: list[tuple[str, str]] = field(default_factory=list)  # (monitor label, text)
    seconds: float = 0.0


class Scorer:
    """One text through one monitor, whichever kind: a sync ``check`` is called, an async
    one (an LLM judge) awaited on one event loop kept for the whole run, as its HTTP
    client needs."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def __call__(self, monitor: Monitor | AsyncMonitor, text: str) -> Finding:
        if isinstance(monitor, AsyncMonitor):
            return self._loop.run_until_complete(monitor.check([text]))[0]
        return monitor.check([text])[0]

    def close(self, monitor: Monitor | AsyncMonitor) -> None:
        if isinstance(monitor, AsyncMonitor):
            self._loop.run_until_complete(monitor.close())
        else:
            monitor.close()

    def shutdown(self) -> None:
        self._loop.close()


def _hit_label(spec: MonitorSpec, monitor: Monitor | AsyncMonitor, text: str, score: Scorer) -> str | None:
    finding = score(monitor, text)
    if is_hit(spec, finding) or (spec.action == "redact" and finding.spans):
        labels = {span.label for span in finding.spans} or set(finding.labels)
        return f"{spec.id}:{','.join(sorted(labels)) or '-'}"
    return None


def _hits(
    monitors: list[tuple[MonitorSpec, Monitor | AsyncMonitor]], text: str, score: Scorer
) -> list[tuple[str, str]]:
    """``(action, monitor label)`` of each monitor that acts on ``text``."""
    return [
        (spec.action, label)
        for spec, monitor in monitors
        if "input" in spec.stages or "output" in spec.stages
        if (label := _hit_label(spec, monitor, text, score)) is not None
    ]


def evaluate(
    name: str, monitors: list[tuple[MonitorSpec, Monitor | AsyncMonitor]], items: list[Item], score: Scorer
) -> SetResult:
    result = SetResult(name)
    started = time.perf_counter()
    for item in items:
        hits = _hits(monitors, item.text, score)
        result.total[item.label] += 1
        source = item.source or "-"
        result.by_source[f"{item.label}/{source}"]["n"] += 1
        for action in {"any", *(action for action, _label in hits)} if hits else ():
            result.by_action[item.label][action] += 1
        if hits:
            result.caught[item.label] += 1
            result.by_source[f"{item.label}/{source}"]["caught"] += 1
            if not item.harmful:
                result.false_positives.append((hits[0][1], item.text))
    result.seconds = time.perf_counter() - started
    return result


def rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"n": n, "caught": k, "rate": k / n if n else 0.0, "ci95": [lo, hi]}


def summary(result: SetResult) -> dict:
    rows = {}
    for label in sorted(result.total):
        rows[label] = {
            **rate(result.caught[label], result.total[label]),
            "by_action": {
                action: rate(k, result.total[label]) for action, k in sorted(result.by_action[label].items())
            },
        }
    sources = {key: rate(counts["caught"], counts["n"]) for key, counts in sorted(result.by_source.items())}
    return {"set": result.name, "labels": rows, "seconds": result.seconds, "sources": sources}


def _pct(row: dict) -> str:
    lo, hi = row["ci95"]
    return f"{row['caught']:5}/{row['n']:<5} {100 * row['rate']:5.1f} %  [{100 * lo:.1f}, {100 * hi:.1f}]"


def print_summary(data: dict) -> None:
    """Per label, then per label and source; benign rows say "false positive" and show
    each action apart."""
    for label, row in data["labels"].items():
        what = "false positive, any action" if label == "benign" else "caught"
        print(f"  {label:16} {_pct(row)}  {what}")
        if label == "benign":
            for action, cell in row["by_action"].items():
                if action != "any":
                    print(f"    {'by ' + action:14} {_pct(cell)}")
    for key, row in data["sources"].items():
        print(f"    {key:30} {_pct(row)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.monitor_eval", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        required=True,
        metavar="PATH",
        help="JSONL/CSV file or folder (repeatable; items are pooled)",
    )
    parser.add_argument("--matrix", type=Path, help="scenario matrix (default: the bench's)")
    parser.add_argument("--sets", help="sets to score (default: all but detoxify)")
    parser.add_argument("--examples", type=int, default=3, help="false positives shown per monitor label")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args(argv)
    items = [item for path in args.dataset for item in load_dataset(path)]
    matrix = load_matrix(args.matrix)
    names = args.sets.split(",") if args.sets else [n for n in matrix.sets if n not in SKIP_BY_DEFAULT]
    registry = MonitorRegistry.from_entry_points()
    detector = PiiDetector()
    score = Scorer()
    report = []
    for name in names:
        monitors = [(spec, registry.build(spec)) for spec in matrix.sets[name].monitors]
        result = evaluate(name, monitors, items, score)
        data = summary(result)
        report.append(data)
        print(f"== {name} ({result.seconds:.1f} s)")
        print_summary(data)
        by_label: dict[str, list[str]] = defaultdict(list)
        for label, text in result.false_positives:
            by_label[label].append(text)
        for label, texts in sorted(by_label.items()):
            print(f"  false positives {label}: {len(texts)}")
            for text in texts[: args.examples]:
                print(f"    - {mask(text, detector)}")
        data["false_positives"] = {
            label: {"n": len(texts), "examples": [mask(t, detector) for t in texts[: args.examples]]}
            for label, texts in sorted(by_label.items())
        }
        for _spec, monitor in monitors:
            score.close(monitor)
    score.shutdown()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
