"""One streamed text field (a choice's content, reasoning, a tool call's arguments):
what arrived, what was checked, what may leave. Pure bookkeeping, no I/O, no monitors.

Offsets are absolute (characters since the field began). Invariants, kept by
``accept`` and proved by the property tests:

- ``cleared <= checked <= looked <= end``: text leaves only after a check saw it; a
  check reads only up to where no monitor needs more text (its hold), and ``looked``
  marks what was considered, so unchanged text is not checked twice;
- ``cleared`` never lies strictly inside a span to redact, so a span leaves whole,
  as one marker, in the release that reaches its end;
- once told what was sent (``forget``), only text a later check or send can still need
  is kept (``overlap`` characters before ``cleared`` as context, from a sentence's or a word's start,
  and everything after),
  so a long answer costs the same per chunk as a short one.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitors.base import Span
from monitors.redact import marker, merge_spans
from monitors.sentences import last_sentence_start


class FieldText:
    __slots__ = (
        "overlap",
        "reach",
        "_base_starts_sentence",
        "cleared",
        "checked",
        "looked",
        "_text",
        "_base",
        "_spans",
        "_memo",
    )

    def __init__(self, overlap: int, reach: int = 0) -> None:
        self.overlap = overlap
        # How much further back a check's context may begin, to begin at its sentence's
        # start: ``overlap``, or the longest sentence a monitor scores whole
        # (``MonitorPipeline.context_chars``).
        self.reach = max(overlap, reach)
        self._base_starts_sentence = True  # the kept text begins at a sentence's start
        self.cleared = 0  # text before this may be sent
        self.checked = 0  # text before this was seen by a check
        self.looked = 0  # text before this was considered for a check (held or checked)
        self._text = ""  # from ``_base`` on
        self._base = 0
        self._spans: list[Span] = []  # to redact, absolute, ending after ``cleared``
        # _context()'s answer and what it depends on (base, cleared): text before
        # ``cleared`` never changes, and forget() asks at every token while ``cleared``
        # moves only at a check.
        self._memo: tuple[int, int, int, bool] = (-1, -1, 0, False)

    @property
    def end(self) -> int:
        return self._base + len(self._text)

    @property
    def unchecked(self) -> bool:
        """Text arrived since the last check was planned."""
        return self.looked < self.end

    @property
    def held(self) -> int:
        """Characters checked or not that may not leave yet."""
        return self.end - self.cleared

    def add(self, text: str) -> tuple[int, int]:
        """Append arriving text; its absolute range."""
        start = self.end
        self._text += text
        return start, self.end

    def window(self) -> tuple[str, int, int]:
        """What the next check reads: ``overlap`` released characters as context, then
        everything not released. Returns the text, its absolute start, and where in it
        the unreleased part begins."""
        start = self._context_start()
        text = self._text[start - self._base :]
        return text, start, self.cleared - start

    def accept(self, window_start: int, window_end: int, spans: Sequence[Span]) -> None:
        """A check of ``[window_start, window_end)`` found ``spans`` (window coordinates)
        to redact: the text it read may leave."""
        found = [Span(s.start + window_start, s.end + window_start, s.label) for s in spans]
        # Spans beyond ``cleared`` are re-found by every check that sees them: keep the
        # newest (it read the most context); a span reaching back into text already sent
        # keeps only what is still here to mask.
        kept = [s for s in self._spans if s.end <= self.cleared]
        fresh = [Span(max(s.start, self.cleared), s.end, s.label) for s in found if s.end > self.cleared]
        self._spans = merge_spans(kept + fresh, self.end)
        self.checked = max(self.checked, window_end)
        self.looked = max(self.looked, window_end)
        self.clear_to(window_end)

    def clear_to(self, position: int) -> None:
        """Let text leave up to ``position`` (never into unchecked text, never backwards);
        a span cut by ``position`` is held whole."""
        position = min(position, self.checked)
        for span in self._spans:
            if span.start < position < span.end:
                position = span.start
        self.cleared = max(self.cleared, position)

    def release_all(self) -> None:
        """The field is complete (or over its hold cap): everything checked may leave,
        every span in it masked."""
        self.cleared = self.checked

    def piece(self, start: int, stop: int) -> str:
        """Characters ``[start, stop)`` as the client gets them: a span becomes one
        marker, in the piece that holds its first character."""
        out: list[str] = []
        position = start
        for span in self._spans:
            if span.end <= position or span.start >= stop:
                continue
            if span.start > position:
                out.append(self._slice(position, span.start))
            if span.start >= start:
                out.append(marker(span.label))
            position = min(stop, span.end)
        if position < stop:
            out.append(self._slice(position, stop))
        return "".join(out)

    def spans_within(self, start: int, stop: int) -> list[Span]:
        """The spans that mask part of ``[start, stop)``, relative to ``start`` (one that
        began earlier has a negative start)."""
        return [
            Span(span.start - start, span.end - start, span.label)
            for span in self._spans
            if span.start < stop and start < span.end
        ]

    def touches_span(self, start: int, stop: int) -> bool:
        return any(span.start < stop and start < span.end for span in self._spans)

    def forget(self, before: int) -> None:
        """Nothing before ``before`` will be read again (sent already): drop it, keeping
        ``overlap`` characters before ``cleared`` as the next check's context."""
        context, at_sentence = self._context()
        keep_from = min(before, context)
        if keep_from > self._base:
            self._text = self._text[keep_from - self._base :]
            self._base = keep_from
            self._spans = [span for span in self._spans if span.end > keep_from]
            # The end of the sentence before is gone with it: remember what it showed.
            self._base_starts_sentence = at_sentence and keep_from == context

    def _context_start(self) -> int:
        return self._context()[0]

    def _context(self) -> tuple[int, bool]:
        """Where a check's context begins, and whether a sentence begins there:
        ``overlap`` characters before ``cleared``, moved back to the start of that
        sentence when it began at most ``reach`` further back (sentences as
        ``monitors.sentences`` ends them, the rule of the monitors that score
        sentences), else on to the next word when that cuts one. A classifier scores
        sentences, and a fragment can score above the sentence it is cut from ("he is a
        stupid creep and" above "Tell my neighbour that he is a stupid creep and"): read
        from mid-sentence, a stream would block what the same answer whole passes. A cut
        word reads as a word boundary the text does not have ("xxforbidden" as
        "forbidden")."""
        base, cleared = self._base, self.cleared
        memo = self._memo
        if memo[0] == base and memo[1] == cleared:
            return memo[2], memo[3]
        found = self._find_context()
        self._memo = (base, cleared, *found)
        return found

    def _find_context(self) -> tuple[int, bool]:
        base = self._base
        start = max(base, self.cleared - self.overlap)
        if start == base:
            return base, base == 0 or self._base_starts_sentence
        if start >= self.cleared:
            return start, False
        text, at = self._text, start - base
        # The next word's start (a sentence may begin there too).
        stop = self.cleared - base
        while at < stop and not text[at - 1].isspace() and not text[at].isspace():
            at += 1
        while at < stop and text[at].isspace():
            at += 1
        floor = max(base, start - self.reach)
        begins = last_sentence_start(text, floor - base, at)
        if begins is not None:
            return base + begins, True
        if floor == base and (base == 0 or self._base_starts_sentence):
            return base, True  # the sentence began where the kept text begins
        return base + at, False

    def _slice(self, start: int, stop: int) -> str:
        return self._text[start - self._base : stop - self._base]
