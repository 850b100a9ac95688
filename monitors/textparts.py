"""Split a text that is longer than a model's context into parts it can read whole.

A served classifier refuses (or, told to, truncates) a text past its context; a
monitor must do neither silently. It scores the parts and keeps the highest score,
so harm anywhere in the text counts.

The budget is in UTF-8 bytes because a byte is an upper bound on tokens that holds
without the tokenizer: byte-level BPE makes at most one token per byte, WordPiece and
SentencePiece (with byte fallback) at most one per character, and a character is at
least one byte. Parts end at whitespace where one is near, and consecutive parts
overlap by ``overlap`` bytes, so a phrase cut in two is still read whole in one part.
Pure: no I/O, tested directly.
"""

from __future__ import annotations

__all__ = ["split_spans", "split_text"]


def _byte_offsets(text: str) -> list[int]:
    """offsets[i] = UTF-8 bytes of text[:i]."""
    offsets = [0] * (len(text) + 1)
    total = 0
    for i, char in enumerate(text):
        total += len(char.encode("utf-8")) if ord(char) > 0x7F else 1
        offsets[i + 1] = total
    return offsets


def _end(offsets: list[int], start: int, budget: int) -> int:
    """The furthest end such that text[start:end] fits ``budget`` bytes (at least start + 1)."""
    low, high = start + 1, len(offsets) - 1
    while low < high:  # the largest end with offsets[end] - offsets[start] <= budget
        mid = (low + high + 1) // 2
        if offsets[mid] - offsets[start] <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def split_text(text: str, max_bytes: int, overlap: int = 0) -> list[str]:
    """``text`` in parts of at most ``max_bytes`` UTF-8 bytes (one part when it fits); see
    ``split_spans``."""
    return [text[start:end] for start, end in split_spans(text, max_bytes, overlap)]


def split_spans(text: str, max_bytes: int, overlap: int = 0) -> list[tuple[int, int]]:
    """``(start, end)`` of each part of ``text``: at most ``max_bytes`` UTF-8 bytes each.

    A part ends after whitespace when there is some in its second half; the next part
    starts ``overlap`` bytes (at most half a part) before the previous one ended, at a
    word's start where there is one. Every character is in at least one part.
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must be at least 4 (one character of any script)")
    if len(text) * 4 <= max_bytes or len(text.encode("utf-8")) <= max_bytes:
        return [(0, len(text))]  # the common case, decided in C
    offsets = _byte_offsets(text)
    overlap = max(0, min(overlap, max_bytes // 2))
    parts: list[tuple[int, int]] = []
    start = previous_end = 0
    while True:
        end = _end(offsets, start, max_bytes)
        if end >= len(text):
            parts.append((start, len(text)))
            return parts
        cut = end
        # Cut after whitespace in the part's second half, past where the last part ended.
        floor = max(start + (end - start) // 2, previous_end)
        while cut > floor and not text[cut - 1].isspace():
            cut -= 1
        if cut > floor:
            end = cut
        parts.append((start, end))
        previous_end = end
        # Back up by the overlap (keeping room for the next character: progress), then
        # forward to a word's start.
        nxt = end
        while (
            nxt > start + 1
            and offsets[end] - offsets[nxt - 1] <= overlap
            and offsets[end + 1] - offsets[nxt - 1] <= max_bytes
        ):
            nxt -= 1
        while start < nxt < end and not text[nxt - 1].isspace():
            nxt += 1
        start = max(nxt, start + 1)
