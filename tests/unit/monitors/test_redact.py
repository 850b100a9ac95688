from __future__ import annotations

import re

from hypothesis import assume, given
from hypothesis import strategies as st

from monitors.base import Span
from monitors.redact import apply_redactions, excerpt, merge_spans

MARKER = re.compile(r"\[REDACTED:[A-Z_+]+\]")


def test_replaces_spans_with_upper_case_labels():
    text = "mail bob@example.com or call 555"
    spans = [Span(5, 20, "email"), Span(29, 32, "phone")]
    assert apply_redactions(text, spans) == "mail [REDACTED:EMAIL] or call [REDACTED:PHONE]"


def test_merges_overlapping_and_touching_spans():
    assert merge_spans([Span(0, 4, "A"), Span(2, 6, "B"), Span(6, 8, "A"), Span(10, 12, "C")], 20) == [
        Span(0, 8, "A+B"),
        Span(10, 12, "C"),
    ]
    assert apply_redactions("abcdefghij", [Span(3, 5, "X"), Span(0, 4, "X")]) == "[REDACTED:X]fghij"


def test_clips_out_of_range_and_drops_empty_spans():
    assert apply_redactions("abc", [Span(-5, 1, "X"), Span(2, 99, "Y"), Span(1, 1, "Z")]) == (
        "[REDACTED:X]b[REDACTED:Y]"
    )


def test_excerpt_is_short_single_line_and_centred_on_the_first_span():
    text = "lorem ipsum " * 30 + "secret 4111111111111111\nend" + " dolor" * 30
    start = text.index("4111")
    result = excerpt(text, [Span(start, start + 16, "CREDIT_CARD")], max_chars=80)
    assert len(result) <= 80
    assert "[REDACTED:CREDIT_CARD]" in result
    assert "4111" not in result and "\n" not in result
    assert result.startswith("…") and result.endswith("…")


def test_short_excerpt_is_the_masked_text():
    assert excerpt("hi bob@x.io", [Span(3, 11, "EMAIL")]) == "hi [REDACTED:EMAIL]"


@st.composite
def text_and_spans(draw):
    text = draw(st.text(min_size=0, max_size=80))
    n = len(text)
    spans = draw(
        st.lists(
            st.tuples(st.integers(0, n), st.integers(0, n), st.sampled_from(["EMAIL", "PHONE", "api_key"])),
            max_size=6,
        )
    )
    return text, [Span(min(a, b), max(a, b), label) for a, b, label in spans]


@given(text_and_spans())
def test_redaction_keeps_exactly_the_unflagged_text(case):
    """Between the markers lie exactly the runs of characters outside all spans: no leak."""
    text, spans = case
    assume("[REDACTED:" not in text)
    flagged = {i for span in spans for i in range(max(0, span.start), min(len(text), span.end))}
    segments, previous_flagged = [""], False
    for i, char in enumerate(text):
        if i in flagged:
            if not previous_flagged:
                segments.append("")
            previous_flagged = True
        else:
            segments[-1] += char
            previous_flagged = False
    assert MARKER.split(apply_redactions(text, spans)) == segments


@given(text_and_spans(), st.integers(10, 200))
def test_excerpt_is_a_bounded_cut_of_the_masked_text(case, max_chars):
    """An excerpt only cuts the masked text, so it inherits the no-leak property above."""
    text, spans = case
    result = excerpt(text, spans, max_chars=max_chars)
    assert len(result) <= max_chars
    assert result.strip("…") in " ".join(apply_redactions(text, spans).split())
