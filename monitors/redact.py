"""Masking flagged spans: for redacted texts and for audit-log excerpts."""

from __future__ import annotations

from collections.abc import Iterable

from monitors.base import Span

_ELLIPSIS = "…"


def merge_spans(spans: Iterable[Span], length: int) -> list[Span]:
    """Clip spans to ``[0, length)`` and merge overlapping or touching ones, sorted by start.

    Touching spans merge so two adjacent secrets become one marker, which does not
    reveal where one ends and the next begins. A merged span's label joins the distinct
    labels in order (``EMAIL+PHONE``).
    """
    clipped = sorted(
        (Span(max(0, s.start), min(length, s.end), s.label) for s in spans),
        key=lambda s: (s.start, s.end),
    )
    merged: list[tuple[int, int, list[str]]] = []
    for span in clipped:
        if span.end <= span.start:
            continue
        if merged and span.start <= merged[-1][1]:
            start, end, labels = merged[-1]
            if span.label not in labels:
                labels.append(span.label)
            merged[-1] = (start, max(end, span.end), labels)
        else:
            merged.append((span.start, span.end, [span.label]))
    return [Span(start, end, "+".join(labels)) for start, end, labels in merged]


def marker(label: str) -> str:
    return f"[REDACTED:{label.upper()}]"


def apply_redactions(text: str, spans: Iterable[Span]) -> str:
    """``text`` with each (merged) span replaced by ``[REDACTED:<LABEL>]``."""
    parts: list[str] = []
    position = 0
    for span in merge_spans(spans, len(text)):
        parts.append(text[position : span.start])
        parts.append(marker(span.label))
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def excerpt(text: str, spans: Iterable[Span], max_chars: int = 120) -> str:
    """A one-line excerpt for the audit log, spans masked, at most ``max_chars`` long.

    The window starts a little before the first masked span so the reader sees its
    context. Masking happens before cutting, so no cut can expose flagged characters.
    """
    masked = " ".join(apply_redactions(text, spans).split())
    if len(masked) <= max_chars:
        return masked
    budget = max(1, max_chars - 2 * len(_ELLIPSIS))
    first = masked.find("[REDACTED:")
    start = max(0, first - budget // 3) if first >= 0 else 0
    start = min(start, len(masked) - budget)
    window = masked[start : start + budget]
    prefix = _ELLIPSIS if start > 0 else ""
    suffix = _ELLIPSIS if start + budget < len(masked) else ""
    return f"{prefix}{window}{suffix}"
