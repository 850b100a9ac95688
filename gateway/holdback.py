"""Stream windows for output monitors: pure bookkeeping, no I/O, no monitors.

``HoldbackWindow`` holds stream items (a chunk's text plus whatever the caller needs
to re-emit it) until the text they carry has been checked. After each check it
releases the checked prefix but keeps the last ``overlap_chars`` characters held,
and never cuts through a flagged span, so a secret split across chunks or windows
is seen whole and can still be redacted before any of it leaves.

``StreamFirstTracker`` is the other policy: everything is released at once, checks
run behind on the trailing window, and it tells how many released items a block
came too late for (the leaked tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitors.base import Span


@dataclass(slots=True)
class HeldItem:
    text: str
    payload: Any
    arrived_at: float


@dataclass(slots=True)
class Release:
    items: list[HeldItem]
    text: str
    redaction_spans: list[Span] = field(default_factory=list)  # relative to ``text``


class HoldbackWindow:
    def __init__(self, window_chars: int, overlap_chars: int, max_hold_s: float = 0.0) -> None:
        self.window_chars = window_chars
        self.overlap_chars = overlap_chars
        self.max_hold_s = max_hold_s
        self._items: list[HeldItem] = []
        self._pending_text = ""
        self._released_tail = ""  # context for the next check; already sent

    @property
    def held(self) -> bool:
        return bool(self._items)

    def add(self, text: str, payload: Any, now: float) -> bool:
        """Hold an item; True when a check is due: a full window is held, or (with
        ``max_hold_s``) the oldest item waited that long and there is text beyond the
        overlap to release."""
        self._items.append(HeldItem(text, payload, now))
        self._pending_text += text
        if len(self._pending_text) >= self.window_chars:
            return True
        return (self.max_hold_s > 0 and now - self._items[0].arrived_at >= self.max_hold_s
                and len(self._pending_text) > self.overlap_chars)

    def check_text(self) -> tuple[str, int]:
        """The text to check and the offset where the held (unreleased) part starts."""
        return self._released_tail + self._pending_text, len(self._released_tail)

    def release(self, spans: Sequence[Span], *, final: bool) -> Release:
        """Release what the last check cleared. ``spans`` are redact spans in check-text
        coordinates (as returned for ``check_text()``)."""
        offset = len(self._released_tail)
        pending = [Span(s.start - offset, s.end - offset, s.label) for s in spans
                   if s.end > offset]
        if final:
            released, position = list(self._items), len(self._pending_text)
        else:
            released, position = self._releasable(
                len(self._pending_text) - self.overlap_chars, pending)
        text = self._pending_text[:position]
        del self._items[: len(released)]
        self._pending_text = self._pending_text[position:]
        self._released_tail = (self._released_tail + text)[-self.overlap_chars:] \
            if self.overlap_chars else ""
        redact = [Span(max(0, s.start), min(position, s.end), s.label) for s in pending
                  if s.start < position]
        return Release(released, text, redact)


    def _releasable(self, cut: int, spans: list[Span]) -> tuple[list[HeldItem], int]:
        """Whole items ending at or before ``cut``, never ending inside a flagged span."""
        while True:
            released: list[HeldItem] = []
            position = 0
            for item in self._items:
                end = position + len(item.text)
                if end > cut:
                    break
                released.append(item)
                position = end
            # Spans already partly released (negative start) cannot be held back any more.
            crossing = [span.start for span in spans if 0 <= span.start < position < span.end]
            if not crossing:
                return released, position
            cut = min(crossing)


class StreamFirstTracker:
    """Counts text released unchecked and says when the next behind-check is due.

    Only the text a later check can still need (from the last check's overlap on) is
    kept, so a long completion costs the same per chunk as a short one.
    """

    def __init__(self, window_chars: int, overlap_chars: int) -> None:
        self.window_chars = window_chars
        self.overlap_chars = overlap_chars
        self._parts: list[str] = []
        self._base = 0  # absolute offset of the first kept character
        self._length = 0  # absolute length of all text released
        self._checked_upto = 0
        self._item_ends: list[int] = []  # absolute end offset of each released item

    def add(self, text: str) -> bool:
        """Record a released item; True when a check of the trailing window is due."""
        self._parts.append(text)
        self._length += len(text)
        self._item_ends.append(self._length)
        return self._length - self._checked_upto >= self.window_chars - self.overlap_chars

    @property
    def unchecked(self) -> bool:
        return self._length > self._checked_upto

    def next_check(self) -> tuple[str, int]:
        """The window to check (with overlap before it) and its start offset; marks it taken."""
        kept = "".join(self._parts)
        start = max(self._base, self._checked_upto - self.overlap_chars)
        window = kept[start - self._base:]
        self._checked_upto = self._length
        keep_from = max(self._base, self._length - self.overlap_chars)
        self._parts = [kept[keep_from - self._base:]]
        self._base = keep_from
        return window, start

    def leaked_items(self, window_start: int) -> int:
        """Items already released that carry text from the flagged window."""
        return sum(1 for end in self._item_ends if end > window_start)
