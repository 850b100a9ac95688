"""The injection classifier's fitted numbers, scored in plain Python.

``loadtest/train_injection.py`` fits two scikit-learn ``TfidfVectorizer`` blocks side by
side, lowercase word unigrams and bigrams (sublinear tf, l2 norm) and character n-grams
inside word boundaries (``char_wb``, raw counts, l1 norm), each with smooth idf, and a
``LogisticRegression`` on both; it writes each kept n-gram's idf and
coefficient to ``injection_model.json.gz`` beside this file, with the intercept, the
threshold chosen on a validation split and the data it was trained on. This module reads
that file and does the same arithmetic, so the gateway needs neither scikit-learn nor
NumPy for it. Character n-grams read "ignoring", "instructions:" and "1gnore" as kin of
the words seen in training. The l1 norm makes their block a weighted mean of its
n-grams' coefficients, a sum over words: each word's two sums are cached, so the
character block costs a text one lookup per word. A unit test holds its probabilities equal to
scikit-learn's.
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
FORMAT = 2
# Format 1: words alone (no character block); read as format 2 with an empty one.
READABLE_FORMATS = (1, 2)
# A sentence group of fewer words is scored with the next sentence, not on its own (``chunks``).
SEGMENT_MIN_WORDS = 3
# Words whose character n-gram sums are remembered; past this the memory starts afresh.
WORD_CACHE_MAX = 50_000


class InjectionModel:
    """The probability that each text is a prompt injection or jailbreak.

    ``weights`` maps an n-gram (words joined by one space) to its idf and coefficient;
    ``char_weights`` a character n-gram (of ``char_ngrams`` lengths) to its own, or is
    empty for a model of words alone.
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
        char_ngrams: tuple[int, int] = (3, 5),
        char_weights: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self._tokens = re.compile(token_pattern)
        self.segment_chars = segment_chars
        self._ngram_max = ngram_max
        self._weights = dict(weights)
        # Per n-gram, the products the score sums: idf squared (the norm) and idf x coefficient.
        self._terms = {gram: (idf * idf, idf * coef) for gram, (idf, coef) in self._weights.items()}
        self.char_ngrams = (int(char_ngrams[0]), int(char_ngrams[1]))
        self._char_weights = dict(char_weights or {})
        self._word_chars: dict[str, tuple[float, float]] = {}
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
        at whitespace, where no word of the vectorizer's crosses, and character n-grams stay
        inside a word)."""
        if segment_chars <= 0 or len(text) <= segment_chars:
            return self.score(text)
        lower = text.lower()
        if len(lower) != len(text):  # a character whose lower case is longer shifts offsets
            return max([self.score(text), *(self.score(text[a:b]) for a, b in chunks(text, segment_chars))])
        tokens, weights = self._tokens, self._weights
        whole: list[str] = []
        whole_dot = whole_mass = 0.0
        best, last = 0.0, None
        for a, b in chunks(text, segment_chars):
            words = tokens.findall(lower, a, b)
            grams = self._grams(words)
            dot, mass = self._char_sums(lower[a:b])
            best = max(best, self._logistic(grams, dot, mass))
            if words:
                # The whole text's bigram across the segments' boundary.
                if last is not None and (pair := f"{last} {words[0]}") in weights and self._ngram_max >= 2:
                    whole.append(pair)
                last = words[-1]
            whole += grams
            whole_dot, whole_mass = whole_dot + dot, whole_mass + mass
        if self._ngram_max > 2:  # n-grams longer than two across boundaries: no shortcut
            return max(best, self.score(text))
        return max(best, self._logistic(whole, whole_dot, whole_mass))

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

    def _char_sums(self, lower: str) -> tuple[float, float]:
        """The character block's sums over ``lower`` (a lowercase text): of count x idf x
        coefficient and of count x idf over its known n-grams; their ratio is the block's
        dot product (l1 norm). Both add up word by word."""
        if not self._char_weights:
            return 0.0, 0.0
        cache = self._word_chars
        dot = mass = 0.0
        for word in lower.split():
            sums = cache.get(word)
            if sums is None:
                if len(cache) >= WORD_CACHE_MAX:
                    cache.clear()
                sums = cache[word] = self._word_char_sums(word)
            dot += sums[0]
            mass += sums[1]
        return dot, mass

    def _word_char_sums(self, word: str) -> tuple[float, float]:
        """The sums of scikit-learn's ``char_wb`` n-grams of one word (padded with a space
        each side; a word shorter than an n-gram is one n-gram of its own) that the model
        knows, each as often as it occurs."""
        padded, weights = f" {word} ", self._char_weights
        low, high = self.char_ngrams
        dot = mass = 0.0
        for n in range(low, high + 1):
            for i in range(max(1, len(padded) - n + 1)):
                if (pair := weights.get(padded[i : i + n])) is not None:
                    dot += pair[0] * pair[1]
                    mass += pair[0]
            if n >= len(padded):
                break
        return dot, mass

    def _logistic(self, grams: Sequence[str], char_dot: float = 0.0, char_mass: float = 0.0) -> float:
        z = self._intercept + self._word_part(grams) + (char_dot / char_mass if char_mass > 0.0 else 0.0)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0

    def _word_part(self, grams: Sequence[str]) -> float:
        """The word block's dot product with its l2-normed tf-idf vector."""
        terms = self._terms
        dot = squares = 0.0
        if len(set(grams)) == len(grams):  # each n-gram once, as in most prompts: plain sums
            for gram in grams:
                idf_squared, idf_coef = terms[gram]
                squares += idf_squared
                dot += idf_coef
            return dot / math.sqrt(squares) if squares > 0.0 else 0.0
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
        return dot / math.sqrt(squares) if squares > 0.0 else 0.0

    def score(self, text: str) -> float:
        """The whole text's probability, as scikit-learn's ``predict_proba`` gives it."""
        lower = text.lower()
        return self._logistic(self._grams(self._tokens.findall(lower)), *self._char_sums(lower))


def chunks(text: str, width: int) -> list[tuple[int, int]]:
    """Consecutive sentences grouped while the group stays within ``width`` characters (a
    longer sentence is a group of its own); a group of fewer than ``SEGMENT_MIN_WORDS``
    words takes the next sentence whatever its length. A list's "1." or a heading's
    "Instructions:" alone is one or two words whose weight the norm makes the whole
    segment's: it reads as whatever those words lean to, not as what the text says."""
    groups: list[tuple[int, int]] = []
    for start, end in sentences(text):
        if groups and (
            end - groups[-1][0] <= width or len(text[groups[-1][0] : groups[-1][1]].split()) < SEGMENT_MIN_WORDS
        ):
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
        "char_ngrams": list(model.char_ngrams),
        "meta": model.meta,
        "weights": {gram: list(pair) for gram, pair in sorted(model._weights.items())},
        "char_weights": {gram: list(pair) for gram, pair in sorted(model._char_weights.items())},
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
    if data.get("format") not in READABLE_FORMATS:
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
        tuple(data.get("char_ngrams", (3, 5))),
        {gram: (idf, coef) for gram, (idf, coef) in data.get("char_weights", {}).items()},
    )


def from_fitted(
    vectorizer,
    classifier,
    threshold: float = 0.5,
    meta: Mapping | None = None,
    segment_chars: int = 0,
    digits: int = 6,
    char_vectorizer=None,
) -> InjectionModel:
    """The scorer for a fitted word ``TfidfVectorizer`` (and optionally a ``char_wb`` one
    whose columns follow the word block's) and a binary ``LogisticRegression``.

    Numbers are rounded to ``digits`` significant digits to keep the file small (a score
    moves by about 1e-6). Refuses any configuration this scorer would score differently.
    """
    shared = {
        "lowercase": True,
        "preprocessor": None,
        "tokenizer": None,
        "strip_accents": None,
        "norm": "l2",
        "use_idf": True,
        "smooth_idf": True,
        "stop_words": None,
    }
    params = vectorizer.get_params()
    expected = {**shared, "analyzer": "word", "sublinear_tf": True, "binary": False}
    wrong = [key for key, value in expected.items() if params[key] != value]
    if wrong or params["ngram_range"][0] != 1 or list(classifier.classes_) != [False, True]:
        raise ValueError(f"unsupported vectorizer or classifier settings: {wrong or 'ngram/classes'}")
    coefs = classifier.coef_[0]
    idf = vectorizer.idf_
    weights = {
        gram: (float(f"{idf[j]:.{digits}g}"), float(f"{coefs[j]:.{digits}g}"))
        for gram, j in vectorizer.vocabulary_.items()
    }
    char_ngrams, char_weights = (3, 5), {}
    if char_vectorizer is not None:
        char_params = char_vectorizer.get_params()
        wrong = [
            key
            for key, value in {
                **shared,
                "analyzer": "char_wb",
                "norm": "l1",
                "sublinear_tf": False,
                "binary": False,
            }.items()
            if char_params[key] != value
        ]
        if wrong:
            raise ValueError(f"unsupported character vectorizer settings: {wrong}")
        char_ngrams, offset, char_idf = char_params["ngram_range"], len(idf), char_vectorizer.idf_
        char_weights = {
            gram: (float(f"{char_idf[j]:.{digits}g}"), float(f"{coefs[offset + j]:.{digits}g}"))
            for gram, j in char_vectorizer.vocabulary_.items()
        }
    return InjectionModel(
        params["token_pattern"],
        params["ngram_range"][1],
        weights,
        float(classifier.intercept_[0]),
        threshold,
        meta,
        segment_chars,
        char_ngrams,
        char_weights,
    )
