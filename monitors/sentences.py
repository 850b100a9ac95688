"""Where sentences end: one definition for the monitors that score sentences and for
the stream that must hand them whole sentences to score. Pure, no I/O.

A sentence ends at . ! ? or ; followed by whitespace, or at a line break; quotes and
brackets stay with it. The full stop of an initial or a title ("Philip K. Dick",
"Mr. Smith") ends none: cut there, the surname alone is a one-word "sentence" a
classifier scores as a bare insult.
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?;])(?<!\b[A-Z]\.)(?<!\b(?:Mr|Ms|Dr|St)\.)(?<!\bMrs\.)\s+|\n+")


def sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text`` that is not only whitespace."""
    bounds, position = [], 0
    for end in SENTENCE_END.finditer(text):
        bounds.append((position, end.start()))
        position = end.end()
    bounds.append((position, len(text)))
    return [(start, end) for start, end in bounds if not text[start:end].isspace() and end > start]


def last_sentence_start(text: str, floor: int, at: int) -> int | None:
    """Where the last sentence that begins in ``text[floor:at]`` begins (after the end
    of the one before it); ``None`` when no sentence ends there."""
    start = None
    for end in SENTENCE_END.finditer(text, floor, at):
        start = end.end()
    return start
