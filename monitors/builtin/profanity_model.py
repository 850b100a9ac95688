"""alt-profanity-check's model, scored without scikit-learn's per-call machinery.

The wheel ships a TF-IDF vectorizer and a ``CalibratedClassifierCV``: five linear SVMs,
each with a sigmoid calibrator, whose probabilities are averaged. ``predict_prob`` pays
about 5 ms a call in input validation and sparse-matrix plumbing however short the text,
which decides the gateway's CPU when it checks a stream word by word. The arithmetic is
small: a text's few known words, their TF-IDF weights, five dot products. So this module
reads the same fitted numbers and does that arithmetic in plain Python, giving the same
probability as ``predict_prob`` (a unit test holds them equal to 1e-9) in microseconds.

Only the shipped configuration is supported (word unigrams, lowercase, l2 norm, smooth
idf, sigmoid calibration, binary classes); ``load`` refuses any other rather than score
differently.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from pathlib import Path

from monitors.base import MonitorLoadError


class ProfanityModel:
    """``predict_prob`` of alt-profanity-check: the probability that each text is profane.

    ``weights`` maps a vocabulary word to its idf and one coefficient per linear model;
    ``models`` holds each model's intercept and its calibrator's (a, b), where the
    calibrated probability is ``1 / (1 + exp(a * decision + b))``.
    """

    def __init__(
        self,
        token_pattern: str,
        weights: dict[str, tuple[float, tuple[float, ...]]],
        models: Sequence[tuple[float, float, float]],
    ) -> None:
        self._tokens = re.compile(token_pattern)
        self._weights = weights
        self._models = tuple(models)

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return [self.score(text) for text in texts]

    def score(self, text: str) -> float:
        counts: dict[str, int] = {}
        weights = self._weights
        # The vectorizer lowercases the whole text, then keeps only known words (its stop
        # words never made the vocabulary, so dropping unknown words drops them too).
        for token in self._tokens.findall(text.lower()):
            if token in weights:
                counts[token] = counts.get(token, 0) + 1
        n = len(self._models)
        dots = [0.0] * n
        squares = 0.0
        for token, count in counts.items():
            idf, coefs = weights[token]
            value = count * idf
            squares += value * value
            for k in range(n):
                dots[k] += value * coefs[k]
        # l2 normalisation; a text with no known word stays the zero vector.
        norm = math.sqrt(squares) if squares > 0.0 else 1.0
        total = 0.0
        for k, (intercept, a, b) in enumerate(self._models):
            z = a * (dots[k] / norm + intercept) + b
            total += 0.0 if z > 700.0 else 1.0 / (1.0 + math.exp(z))
        return total / n


def package_data() -> Path:
    """The folder holding alt-profanity-check's pickles, found without importing the package
    (its import unpickles both, a second's work done again by ``load``)."""
    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'profanity_check'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load(folder: Path | None = None) -> ProfanityModel:
    import joblib

    folder = folder if folder is not None else package_data()
    vectorizer = joblib.load(folder / "vectorizer.joblib")
    calibrated = joblib.load(folder / "model.joblib")
    return from_fitted(vectorizer, calibrated)


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise MonitorLoadError(
            f"alt-profanity-check's shipped model changed: {what}; "
            "the fast scorer only reproduces the known configuration"
        )


def from_fitted(vectorizer, calibrated) -> ProfanityModel:
    """The scorer for a fitted ``TfidfVectorizer`` and ``CalibratedClassifierCV``."""
    params = vectorizer.get_params()
    _require(params["analyzer"] == "word" and params["ngram_range"] == (1, 1), "not word unigrams")
    _require(
        params["lowercase"]
        and params["preprocessor"] is None
        and params["tokenizer"] is None
        and params["strip_accents"] is None,
        "other preprocessing",
    )
    _require(
        params["norm"] == "l2" and params["use_idf"] and not params["sublinear_tf"] and not params["binary"],
        "other weighting",
    )
    _require(list(calibrated.classes_) == [0, 1], "not binary")
    idf = vectorizer.idf_
    vocabulary = vectorizer.vocabulary_
    models, coefs = [], []
    for member in calibrated.calibrated_classifiers_:
        _require(member.method == "sigmoid" and len(member.calibrators) == 1, "not sigmoid")
        estimator = member.estimator
        _require(estimator.coef_.shape == (1, len(vocabulary)), "not one linear model")
        calibrator = member.calibrators[0]
        models.append((float(estimator.intercept_[0]), float(calibrator.a_), float(calibrator.b_)))
        coefs.append(estimator.coef_[0])
    weights = {word: (float(idf[j]), tuple(float(c[j]) for c in coefs)) for word, j in vocabulary.items()}
    return ProfanityModel(params["token_pattern"], weights, models)
