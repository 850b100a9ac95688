"""How much trailing text of a stream must stay held: pure functions, no I/O.

A streamed answer is checked while it grows. A character may be released once no
enforcing monitor can still change its verdict on it. Each rule here takes the text
checked so far and returns the index from which the rest must stay held (``len(text)``
when nothing need be):

- ``pattern_hold``: from the start of the earliest match that more text could still
  complete or change: one that touches the end of the text (``regex``'s partial
  matching), or a complete one whose start begins a possible longer match:
  ``"call me at 555-01"`` holds ``"555-01"``;
- ``word_hold``: the trailing partial word (the default for classifiers);
- ``word_group_hold``: the same, and new complete words until there are enough of them
  (a model whose check costs mostly a fixed amount judges words in groups);
- ``sentence_hold``: the trailing unfinished sentence;
- ``chars_hold``: a fixed window: text leaves in blocks of ``size`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import regex

# Characters after which a word is complete even without a following space.
_WORD_END = frozenset(".,;:!?)]}\"'")
_SENTENCE_END = re.compile(r"[.!?\n][\"')\]]*\s")


def word_hold(text: str) -> int:
    if not text or text[-1].isspace() or text[-1] in _WORD_END:
        return len(text)
    position = len(text)
    while position > 0 and not text[position - 1].isspace():
        position -= 1
    return position


def word_group_hold(text: str, start: int, min_chars: int) -> int:
    """``word_hold``, holding the new complete words too until ``text[start:]`` has at least
    ``min_chars`` of them (``start`` when it has fewer: nothing to judge yet)."""
    complete = max(start, word_hold(text))
    return complete if complete - start >= min_chars else start


def sentence_hold(text: str) -> int:
    if text and text[-1] in ".!?\n":
        return len(text)
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    return ends[-1] if ends else 0


def chars_hold(text: str, start: int, size: int) -> int:
    """Release whole blocks of ``size`` characters of the unreleased text (from ``start``)."""
    return start + (len(text) - start) // size * size


# Flags by name: the ``regex`` package does not share every value with ``re``.
_FLAGS = {
    re.IGNORECASE: regex.IGNORECASE,
    re.MULTILINE: regex.MULTILINE,
    re.DOTALL: regex.DOTALL,
    re.VERBOSE: regex.VERBOSE,
    re.ASCII: regex.ASCII,
}


def compile_partial(pattern: str, flags: int = 0) -> regex.Pattern:
    """``pattern`` (written for ``re``) compiled for partial matching."""
    converted = 0
    for std, ours in _FLAGS.items():
        if flags & std:
            converted |= ours
    return regex.compile(pattern, converted | regex.VERSION0)


def pattern_hold(patterns: Sequence[regex.Pattern], text: str, start: int = 0) -> int:
    """Start of the earliest match (complete or partial) of any pattern, beginning at or
    after ``start``, that more text could still change; ``len(text)`` when none.

    A stream asks from where its text was last released: a match could begin earlier only
    if the text from there was a possible match's prefix at that release, and then it
    would have been held. (Lookbehinds still read the text before ``start``.)
    """
    end = len(text)
    hold = end
    for pattern in patterns:
        position = start
        while position < hold:
            match = pattern.search(text, position, partial=True)
            if match is None or match.start() >= hold:
                break
            # A match that touches the end, or a complete one that more text could still
            # turn into a longer one (the text from its start is a prefix of a match).
            if match.end() == end or pattern.fullmatch(text, match.start(), partial=True):
                hold = match.start()
                break
            position = match.start() + 1
    return hold
