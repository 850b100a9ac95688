"""Profanity: alt-profanity-check's linear model per segment, plus an obfuscation-aware lexicon.

The model (ships inside its wheel, works offline) was trained on short comments: on a
whole long text the few explicit words are diluted (a 1,100-character jailbreak full
of swearing scores 0.02). So each text is cut into segments (sentences, long ones into
overlapping windows) and the text's score is the highest segment's. The lexicon is
``pyobscenity``'s English preset (a port of the Obscenity library): terms with leetspeak,
confusable-character and doubled-letter variants and a whitelist of innocent words
that contain them ("Scunthorpe"); a lexicon hit scores 1.0 and carries its span. A hit
inside a number ("455", "3.455.1": digits and number punctuation only) is no hit: the
leetspeak table reads digits as letters, which holds for "sh1t" but never for a number. Long
repeats ("fuuuck") are no hit: pyobscenity's collapse step does nothing inside its
matcher, and ours keeps its verdicts.

Options::

    scoring: segments        # segments (default): max over segments; whole: one score per text
    segment_chars: 200       # a longer sentence is scored in windows of this size, half overlapping
    lexicon: obscenity       # obscenity (default) | none
    mild_words: [stupid, ...]  # words that alone make no segment profane ([] to count them)

The model was trained on offensive comments, so it flags insults of wit or nerve as
surely as swearing: "who wrote The Idiot" and "Are you stupid" score 1.00. A segment
it flags that contains one of ``mild_words`` is scored again with them left out, and
keeps the lower score: flagged for its other words, or not at all. None of the default
words is in Surge AI's profanity list (1,598 terms, with severities); a judge or
``detoxify`` is the monitor for insults.

Cheap enough to check a stream word by word: 25-45 µs of CPU for one 60-character
text, 0.4-0.6 ms for 16 (was 7-8 ms and 19-21 ms; measured on a shared 2-core machine).
The model is alt-profanity-check's fitted numbers scored in plain Python
(``profanity_model``: 8-12 µs a text, where ``predict_prob`` pays 4-6 ms a call in
scikit-learn's validation), the lexicon a translate table and a two-character
prefilter (``lexicon``: 13-15 µs a text, where pyobscenity's matcher pays 0.4-0.7 ms);
unit tests hold both to the packages' own results. So it runs inline, on the event loop
(a thread hop costs more than a streamed window's check); a long text costs about 0.5 µs
a character, so a call past ``inline_max_chars`` goes to a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from monitors.base import Finding, Monitor, MonitorLoadError, Span
from monitors.config import MonitorSpec
from monitors.holds import word_hold
from monitors.registry import parse_options
from monitors.sentences import SENTENCE_END, sentences

LABEL = "profanity"
LEXICON_LABEL = "lexicon"
# A capitalised word right after a middle initial is a surname ("Philip K. Dick").
_AFTER_INITIAL = re.compile(r"\b[A-Z]\. $")
# A number as written in prose, versions, times, amounts and phone numbers: digits and the
# punctuation that joins or closes them, no letter. The lexicon's leetspeak table reads
# 4/5/1/0/7/3 as letters ("455" as "ass"); inside a number that reading is always wrong.
_NUMBER_TOKEN = re.compile(r"[-+(\[#$€£\"'‘“]*\d[\d.,:/'’%)\-]*[.,;:!?)\]\"'’”%]*")

# Insults of wit or nerve: none is profanity (none is in Surge AI's list of 1,598 terms).
MILD_WORDS: tuple[str, ...] = (
    "stupid",
    "stupidity",
    "idiot",
    "idiots",
    "idiotic",
    "dumb",
    "fool",
    "fools",
    "foolish",
    "silly",
    "coward",
    "cowards",
    "cowardly",
)

Lexicon = Callable[[str], list[tuple[int, int]]]
# Scores kept for reuse; cleared when it grows past this (a few streams' worth of sentences).
_RECENT_MAX = 512


class ProfanityOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scoring: Literal["segments", "whole"] = "segments"
    segment_chars: int = Field(200, ge=20, le=10_000)
    lexicon: Literal["obscenity", "none"] = "obscenity"
    mild_words: list[str] = list(MILD_WORDS)


def segments(text: str, width: int) -> list[str]:
    """Sentences of ``text``; one longer than ``width`` becomes windows of ``width``, half overlapping.

    The overlap keeps a phrase cut by one window whole in the next.
    """
    return _segments(text, sentences(text), width)


def _segments(text: str, bounds: list[tuple[int, int]], width: int) -> list[str]:
    out: list[str] = []
    for start, end in bounds:
        if end - start <= width:
            out.append(text[start:end])
            continue
        step = width // 2
        for at in range(start, end - step, step):
            out.append(text[at : min(at + width, end)])
    return out or [text]


def in_number(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` lies inside a token made only of digits and number
    punctuation ("455", "3.455.1", "(717)", "4,550."): never leetspeak. A word with digits
    in it ("sh1t", "a55") is no number and still counts."""
    left = start
    while left > 0 and not text[left - 1].isspace():
        left -= 1
    right = end
    while right < len(text) and not text[right].isspace():
        right += 1
    return _NUMBER_TOKEN.fullmatch(text, left, right) is not None


def is_surname(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a capitalised word that follows a middle initial."""
    word = text[start:end]
    return word[:1].isupper() and word[1:].islower() and _AFTER_INITIAL.search(text, 0, start) is not None


class ProfanityMonitor(Monitor):
    # Texts past ~1 ms of work (~0.5 us per character) go to a worker thread.
    inline_max_chars = 2048

    def __init__(
        self,
        predict_prob: Callable[[list[str]], Sequence[float]],
        *,
        scoring: str = "segments",
        segment_chars: int = 200,
        lexicon: Lexicon | None = None,
        threshold: float = 0.5,
        mild_words: Sequence[str] = MILD_WORDS,
    ) -> None:
        self._predict_prob = predict_prob
        self._mild = (
            re.compile(r"\b(?:" + "|".join(map(re.escape, mild_words)) + r")\b", re.IGNORECASE) if mild_words else None
        )
        self._threshold = threshold  # the spec's: what the pipeline will call a hit
        self._scoring = scoring
        self._width = segment_chars
        self._lexicon = lexicon
        # Segment -> score, and sentence -> lexicon hits, of the latest checks: a stream's
        # checks read the same sentences again (the context, and the fragment its hold
        # scored just before), and neither depends on the text around the sentence (a row
        # is scored alone; no term or whitelisted phrase spans a sentence end). Plain dict
        # operations only, so the event loop and a worker thread may share them.
        self._recent: dict[str, float] = {}
        self._recent_hits: dict[str, tuple[tuple[int, int], ...]] = {}

    @property
    def inline(self) -> bool:
        # ~25-45 us for a streamed window: cheaper on the event loop than a thread hop.
        return True

    @property
    def context_chars(self) -> int:
        # A sentence up to a segment long is scored whole: a stream's check must read it
        # from its start (a longer one is scored in windows anyway).
        return self._width if self._scoring == "segments" else 0

    def hold(self, text: str, start: int = 0) -> int:
        """The partial word, as for any classifier; and the unfinished sentence as well
        while what has come of it would be flagged. The model scores sentences, and a
        fragment can score higher than the sentence it grows into ("Shut" alone scores
        0.98): judged on the fragment, a stream would block what the same answer whole
        passes. Holding it only on suspicion keeps benign text flowing a word at a time.
        A sentence longer than a segment is scored in windows anyway: never held whole."""
        at = max(start, word_hold(text))
        if self._scoring != "segments":
            return at
        ends = [match.end() for match in SENTENCE_END.finditer(text, 0, at)]
        sentence = ends[-1] if ends else 0
        begin = max(start, sentence)
        # Scored from the sentence's start, as the check after the hold will read it.
        fragment = text[sentence:at]
        if begin >= at or not fragment.strip() or len(text) - sentence > self._width:
            return at
        (finding,) = self.check([fragment])
        return begin if finding.score >= self._threshold else at

    def _model_scores(self, texts: list[str], bounds: list[list[tuple[int, int]]] | None = None) -> list[float]:
        if self._scoring == "whole":
            whole = dict(zip(texts, (float(p) for p in self._predict_prob(texts)), strict=True))
            self._discount_mild(whole)
            return [whole[text] for text in texts]
        if bounds is None:
            bounds = [sentences(text) for text in texts]
        pieces = [_segments(text, found, self._width) for text, found in zip(texts, bounds, strict=True)]
        recent = self._recent
        scores = {p: score for group in pieces for p in group if (score := recent.get(p)) is not None}
        new = list(dict.fromkeys(p for group in pieces for p in group if p not in scores))
        if new:
            # One call for the whole batch: the model's per-call overhead dwarfs a segment's cost.
            fresh = dict(zip(new, (float(p) for p in self._predict_prob(new)), strict=True))
            self._discount_mild(fresh)
            scores.update(fresh)
            if len(recent) > _RECENT_MAX:
                recent.clear()
            recent.update(fresh)
        return [max(scores[p] for p in group) for group in pieces]

    def _discount_mild(self, scores: dict[str, float]) -> None:
        """Each flagged piece with a mild word: the lower of its score and its score
        without the mild words. Flagged pieces are few, so this adds a model call rarely."""
        mild = self._mild
        if mild is None:
            return
        flagged = [piece for piece, score in scores.items() if score >= self._threshold and mild.search(piece)]
        if flagged:
            without = self._predict_prob([mild.sub("", piece) for piece in flagged])
            for piece, score in zip(flagged, without, strict=True):
                scores[piece] = min(scores[piece], float(score))

    def _lexicon_hits(self, text: str, bounds: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
        if bounds is None:  # scoring: whole
            return self._lexicon(text)
        recent, hits = self._recent_hits, []
        for start, end in bounds:
            sentence = text[start:end]
            found = recent.get(sentence)
            if found is None:
                if len(recent) > _RECENT_MAX:
                    recent.clear()
                found = recent[sentence] = tuple(self._lexicon(sentence))
            hits += [(start + a, start + b) for a, b in found]
        return hits

    def check(self, texts: Sequence[str]) -> list[Finding]:
        if not texts:
            return []
        texts = list(texts)
        # Sentences once: the model scores them (long ones in windows), the lexicon reads them.
        bounds = [sentences(text) for text in texts] if self._scoring == "segments" else None
        model = self._model_scores(texts, bounds)
        findings = []
        for i, (text, score) in enumerate(zip(texts, model, strict=True)):
            hits = (
                [
                    hit
                    for hit in self._lexicon_hits(text, bounds[i] if bounds is not None else None)
                    if not is_surname(text, *hit) and not in_number(text, *hit)
                ]
                if self._lexicon is not None
                else []
            )
            labels = {LABEL: score}
            if hits:
                labels[LEXICON_LABEL] = 1.0
            spans = tuple(Span(start, end, LABEL) for start, end in hits)
            findings.append(Finding(score=1.0 if hits else score, labels=labels, spans=spans))
        return findings


def create(spec: MonitorSpec) -> ProfanityMonitor:
    options = parse_options(spec, ProfanityOptions)
    try:
        # Imported here: unpickling the model takes about a second.
        from monitors.builtin import profanity_model

        predict_prob = profanity_model.load()
    except ImportError as exc:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: alt-profanity-check is not installed ({exc}); pip install alt-profanity-check"
        ) from exc
    lexicon = None
    if options.lexicon == "obscenity":
        try:
            from monitors.builtin import lexicon as obscenity

            lexicon = obscenity.obscenity()
        except ImportError as exc:
            raise MonitorLoadError(
                f"monitor {spec.id!r}: pyobscenity is not installed ({exc}); pip install "
                "pyobscenity, or set lexicon: none"
            ) from exc
    return ProfanityMonitor(
        predict_prob,
        scoring=options.scoring,
        segment_chars=options.segment_chars,
        lexicon=lexicon,
        threshold=spec.threshold,
        mild_words=options.mild_words,
    )
