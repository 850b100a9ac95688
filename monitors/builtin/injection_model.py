"""The injection classifier's fitted numbers, scored in plain Python.

``loadtest/train_injection.py`` fits a scikit-learn ``TfidfVectorizer`` (lowercase word
unigrams and bigrams, sublinear tf, smooth idf, l2 norm) and a ``LogisticRegression`` on
it, and writes each kept n-gram's idf and coefficient to ``injection_model.json.gz``
beside this file, with the intercept, the threshold chosen on a validation split and the
data it was trained on. This module reads that file and does the same arithmetic, so the
gateway needs neither scikit-learn nor NumPy for it: a 200-character text's thirty-odd
words, seventy n-gram lookups and one logistic, in microseconds. A unit test holds its
probabilities equal to scikit-learn's.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from monitors.base import MonitorLoadError
from monitors.sentences import sentences

MODEL_PATH = Path(__file__).parent / "injection_model.json.gz"
FORMAT = 1


class InjectionModel:
    """The probability that each text is a prompt injection or jailbreak.

    ``weights`` maps an n-gram (words joined by one space) to its idf and coefficient.
    """

    def __init__(
        self,
        token_pattern: str,
        ngram_max: int,
        weights: Mapping[str, tuple[float, float]],
        intercept: float,
        threshold: float = 0.5,
        meta: Mapping | None = None,
        segment_chars: int = 0,
    ) -> None:
        self._tokens = re.compile(token_pattern)
        self.segment_chars = segment_chars
        self._ngram_max = ngram_max
        self._weights = dict(weights)
        # Per n-gram, the products the score sums: idf squared (the norm) and idf x coefficient.
        self._terms = {gram: (idf * idf, idf * coef) for gram, (idf, coef) in self._weights.items()}
        self._intercept = intercept
        self.threshold = threshold
        self.meta = dict(meta or {})

    def __call__(self, texts: Sequence[str]) -> list[float]:
        """Each text's score: the highest of the whole text's and its segments' (``score_max``)."""
        return [self.score_max(text, self.segment_chars) for text in texts]

    def score_max(self, text: str, segment_chars: int) -> float:
        """The higher of the whole text's score and each segment's: runs of whole sentences
        up to ``segment_chars`` long (0: the whole text only). An injection appended to a
        long benign text (a document to summarise, an application's own prompt) is diluted
        in the whole; its own sentence is mostly the injection.

        Equal to the highest ``score`` of the text and of each segment's slice, for a
        fraction of the cost: each segment's words are looked up once, and the whole text's
        n-grams are the segments' plus the bigrams across their boundaries (sentences end
        at whitespace, where no word of the vectorizer's crosses)."""
        if segment_chars <= 0 or len(text) <= segment_chars:
            return self.score(text)
        lower = text.lower()
        if len(lower) != len(text):  # a character whose lower case is longer shifts offsets
            return max([self.score(text), *(self.score(text[a:b]) for a, b in chunks(text, segment_chars))])
        tokens, weights = self._tokens, self._weights
        whole: list[str] = []
        best, last = 0.0, None
        for a, b in chunks(text, segment_chars):
            words = tokens.findall(lower, a, b)
            grams = self._grams(words)
            best = max(best, self._logistic(grams))
            if words:
                # The whole text's bigram across the segments' boundary.
                if last is not None and (pair := f"{last} {words[0]}") in weights and self._ngram_max >= 2:
                    whole.append(pair)
                last = words[-1]
            whole += grams
        if self._ngram_max > 2:  # n-grams longer than two across boundaries: no shortcut
            return max(best, self.score(text))
        return max(best, self._logistic(whole))

    def recentre(self, threshold: float) -> None:
        """Shift the intercept so that a score of ``threshold`` becomes 0.5: the threshold
        chosen on validation becomes the monitor's default one, and every score moves
        the same way in logit space (the order of texts is unchanged)."""
        self._intercept -= math.log(threshold / (1.0 - threshold))
        self.meta["validated_threshold"] = threshold
        self.threshold = 0.5

    def _grams(self, words: Sequence[str]) -> list[str]:
        """The known n-grams of ``words``, each as often as it occurs. Only known n-grams
        count, for the norm too: the vectorizer drops the rest."""
        weights = self._weights
        if self._ngram_max == 2:  # the shipped model: unrolled, it is half the work
            grams = [word for word in words if word in weights]
            grams += [pair for pair in map(" ".join, zip(words, words[1:], strict=False)) if pair in weights]
            return grams
        return [
            gram
            for n in range(1, self._ngram_max + 1)
            for i in range(len(words) - n + 1)
            if (gram := " ".join(words[i : i + n])) in weights
        ]

    def _logistic(self, grams: Sequence[str]) -> float:
        terms = self._terms
        dot = squares = 0.0
        if len(set(grams)) == len(grams):  # each n-gram once, as in most prompts: plain sums
            for gram in grams:
                idf_squared, idf_coef = terms[gram]
                squares += idf_squared
                dot += idf_coef
            return self._sigmoid(dot, squares)
        counts: dict[str, int] = {}
        for gram in grams:
            counts[gram] = counts.get(gram, 0) + 1
        for gram, count in counts.items():
            idf_squared, idf_coef = terms[gram]
            if count == 1:  # most n-grams of a prompt: tf 1, no logarithm to take
                squares += idf_squared
                dot += idf_coef
            else:
                tf = 1.0 + math.log(count)  # sublinear tf
                squares += tf * tf * idf_squared
                dot += tf * idf_coef
        return self._sigmoid(dot, squares)

    def _sigmoid(self, dot: float, squares: float) -> float:
        z = self._intercept + (dot / math.sqrt(squares) if squares > 0.0 else 0.0)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0

    def score(self, text: str) -> float:
        """The whole text's probability, as scikit-learn's ``predict_proba`` gives it."""
        return self._logistic(self._grams(self._tokens.findall(text.lower())))


def chunks(text: str, width: int) -> list[tuple[int, int]]:
    """Consecutive sentences grouped while the group stays within ``width`` characters (a
    longer sentence is a group of its own)."""
    groups: list[tuple[int, int]] = []
    for start, end in sentences(text):
        if groups and end - groups[-1][0] <= width:
            groups[-1] = (groups[-1][0], end)
        else:
            groups.append((start, end))
    return groups


def to_json(model: InjectionModel) -> dict:
    return {
        "format": FORMAT,
        "token_pattern": model._tokens.pattern,
        "ngram_max": model._ngram_max,
        "intercept": model._intercept,
        "threshold": model.threshold,
        "segment_chars": model.segment_chars,
        "meta": model.meta,
        "weights": {gram: list(pair) for gram, pair in sorted(model._weights.items())},
    }


def save(model: InjectionModel, path: Path = MODEL_PATH) -> None:
    data = json.dumps(to_json(model), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # mtime=0: the same model gives the same bytes, so a retrain that changed nothing shows no diff.
    path.write_bytes(gzip.compress(data, mtime=0))


def load(path: Path = MODEL_PATH) -> InjectionModel:
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise MonitorLoadError(
            f"cannot read the injection model {path}: {exc}; retrain it with python -m loadtest.train_injection"
        ) from exc
    if data.get("format") != FORMAT:
        raise MonitorLoadError(
            f"{path}: model format {data.get('format')!r}, expected {FORMAT}; "
            "retrain it with python -m loadtest.train_injection"
        )
    return InjectionModel(
        data["token_pattern"],
        data["ngram_max"],
        {gram: (idf, coef) for gram, (idf, coef) in data["weights"].items()},
        data["intercept"],
        data["threshold"],
        data.get("meta"),
        data.get("segment_chars", 0),
    )


def from_fitted(
    vectorizer, classifier, threshold: float = 0.5, meta: Mapping | None = None, segment_chars: int = 0, digits: int = 6
) -> InjectionModel:
    """The scorer for a fitted ``TfidfVectorizer`` and binary ``LogisticRegression``.

    Numbers are rounded to ``digits`` significant digits to keep the file small (a score
    moves by about 1e-6). Refuses any configuration this scorer would score differently.
    """
    params = vectorizer.get_params()
    expected = {
        "analyzer": "word",
        "lowercase": True,
        "preprocessor": None,
        "tokenizer": None,
        "strip_accents": None,
        "norm": "l2",
        "use_idf": True,
        "smooth_idf": True,
        "sublinear_tf": True,
        "binary": False,
        "stop_words": None,
    }
    wrong = [key for key, value in expected.items() if params[key] != value]
    if wrong or params["ngram_range"][0] != 1 or list(classifier.classes_) != [False, True]:
        raise ValueError(f"unsupported vectorizer or classifier settings: {wrong or 'ngram/classes'}")
    coefs = classifier.coef_[0]
    idf = vectorizer.idf_
    weights = {
        gram: (float(f"{idf[j]:.{digits}g}"), float(f"{coefs[j]:.{digits}g}"))
        for gram, j in vectorizer.vocabulary_.items()
    }
    return InjectionModel(
        params["token_pattern"],
        params["ngram_range"][1],
        weights,
        float(classifier.intercept_[0]),
        threshold,
        meta,
        segment_chars,
    )
