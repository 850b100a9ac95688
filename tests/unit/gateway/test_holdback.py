from hypothesis import given
from hypothesis import strategies as st

from gateway.holdback import HoldbackWindow, StreamFirstTracker
from monitors.base import Span
from monitors.redact import apply_redactions

SECRET = "4111 1111 1111 1111"


def feed(window, pieces):
    released = []
    for piece in pieces:
        if window.add(piece, piece, 0.0):
            text, _ = window.check_text()
            released.append(window.release(spans_for(text), final=False))
    text, _ = window.check_text()
    released.append(window.release(spans_for(text), final=True))
    return released


def spans_for(text):
    index = text.find(SECRET)
    return [Span(index, index + len(SECRET), "credit_card")] if index >= 0 else []


def test_holds_until_window_full_and_keeps_overlap():
    window = HoldbackWindow(window_chars=10, overlap_chars=4)
    assert not window.add("abc", "p1", 0.0)
    assert window.add("defghij", "p2", 0.0)
    release = window.release([], final=False)
    # 10 chars held, overlap 4 -> cut at 6: only whole items before the cut go out.
    assert [item.payload for item in release.items] == ["p1"]
    assert release.text == "abc"
    assert window.held


def test_final_release_empties_the_window():
    window = HoldbackWindow(window_chars=10, overlap_chars=4)
    window.add("abc", "p1", 0.0)
    release = window.release([], final=True)
    assert release.text == "abc" and not window.held


def test_never_cuts_through_a_flagged_span():
    window = HoldbackWindow(window_chars=20, overlap_chars=2)
    text = "card " + SECRET
    for char in text:
        window.add(char, char, 0.0)
    check, _ = window.check_text()
    release = window.release(spans_for(check), final=False)
    assert release.text == "card "


@given(st.text(alphabet="ab ", max_size=60), st.text(alphabet="ab ", max_size=60),
       st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40))
def test_secret_split_anywhere_is_always_redacted(before, after, sizes):
    text = before + SECRET + after
    pieces, start = [], 0
    for size in sizes * 20:
        if start >= len(text):
            break
        pieces.append(text[start:start + size])
        start += size
    if start < len(text):
        pieces.append(text[start:])
    window = HoldbackWindow(window_chars=24, overlap_chars=len(SECRET) + 1)
    out = "".join(apply_redactions(r.text, r.redaction_spans) for r in feed(window, pieces))
    assert "1111" not in out
    assert out == before + "[REDACTED:CREDIT_CARD]" + after


def test_stream_first_due_and_leak_count():
    tracker = StreamFirstTracker(window_chars=10, overlap_chars=2)
    assert not tracker.add("abcd")
    assert tracker.add("efgh")  # 8 new chars >= 10 - 2
    text, start = tracker.next_check()
    assert (text, start) == ("abcdefgh", 0)
    tracker.add("ij")
    assert tracker.leaked_items(0) == 3
    assert tracker.leaked_items(8) == 1
    text, start = tracker.next_check()
    assert (text, start) == ("ghij", 6)
    assert not tracker.unchecked


def test_max_hold_releases_early_but_keeps_the_overlap():
    window = HoldbackWindow(window_chars=200, overlap_chars=4, max_hold_s=0.1)
    assert not window.add("ab", "p1", 0.00)
    assert not window.add("cd", "p2", 0.05)   # not waited long enough
    assert not window.add("", "p3", 0.20)     # waited, but nothing beyond the overlap
    assert window.add("efgh", "p4", 0.21)     # waited, and text beyond the overlap
    release = window.release([], final=False)
    assert [item.payload for item in release.items] == ["p1", "p2", "p3"]
    assert release.text == "abcd"  # "efgh" (the overlap) stays held


def test_max_hold_off_waits_for_a_full_window():
    window = HoldbackWindow(window_chars=200, overlap_chars=4)
    assert not window.add("abcdefgh", "p1", 0.0)
    assert not window.add("ijkl", "p2", 60.0)


def test_stream_first_keeps_only_what_a_later_check_needs():
    tracker = StreamFirstTracker(window_chars=10, overlap_chars=3)
    for _ in range(1000):
        if tracker.add("abcd"):
            text, start = tracker.next_check()
            assert len(text) <= 4 * 3 + 3  # a window plus the overlap, never the whole text
    assert tracker.leaked_items(4 * 999) == 1
