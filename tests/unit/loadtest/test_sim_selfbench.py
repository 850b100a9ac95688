"""The self-benchmark's byte-level chunk counting."""

from __future__ import annotations

from loadtest.sim.selfbench import Tally, count_events


def test_separators_split_across_reads_count_once():
    stream = b"data: a\n\ndata: b\n\ndata: [DONE]\n\n"
    for cut in range(1, len(stream)):
        first, carry = count_events(stream[:cut], b"")
        second, _ = count_events(stream[cut:], carry)
        assert first + second == 3, cut


def test_chunked_framing_adds_no_events():
    framed = b"a\r\ndata: x\n\n\r\n" + b"b\r\ndata: y\n\n\r\n" + b"0\r\n\r\n"
    assert count_events(framed, b"")[0] == 2


def test_role_and_done_are_not_content_chunks():
    assert Tally(events=12, requests=2).chunks == 8
