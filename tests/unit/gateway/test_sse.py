import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import SSEParser, encode_event

STREAM = (
    b'data: {"a": 1}\n\n'
    b": keep-alive comment\n\n"
    b"event: message\ndata: line one\ndata: line two\n\n"
    b'data:{"no_space": true}\r\n\r\n'
    b"id: 7\r\ndata: crlf\r\n\r\n"
    b"data: cr only\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"line one\nline two", b'{"no_space": true}', b"crlf", b"cr only", b"[DONE]"]


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    parser = SSEParser()
    events, start = [], 0
    for cut in sorted(cuts) + [len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.flush()
    return [event.data for event in events]


def test_whole_stream():
    assert parse_in_pieces(STREAM, []) == EXPECTED


@pytest.mark.parametrize("offset", range(1, len(STREAM)))
def test_split_at_every_byte_offset(offset):
    assert parse_in_pieces(STREAM, [offset]) == EXPECTED


def test_one_byte_at_a_time():
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_arbitrary_splits(cuts):
    assert parse_in_pieces(STREAM, cuts) == EXPECTED


def test_done_detection_and_raw_bytes():
    parser = SSEParser()
    events = parser.feed(b"data: x\n\ndata: [DONE]\n\n")
    assert [e.is_done for e in events] == [False, True]
    assert events[0].raw == b"data: x\n\n"


def test_final_event_without_blank_line_is_kept_on_flush():
    parser = SSEParser()
    assert parser.feed(b"data: tail") == []
    assert [e.data for e in parser.flush()] == [b"tail"]


def test_event_without_data_is_dropped():
    assert SSEParser().feed(b"event: ping\nid: 3\n\n") == []


def test_encode_roundtrip():
    assert [e.data for e in SSEParser().feed(encode_event(b'{"x":1}'))] == [b'{"x":1}']


def events_of(parser: SSEParser, reads: list[bytes]) -> list[tuple[bytes, bytes]]:
    events = [event for read in reads for event in parser.feed(read)] + parser.flush()
    return [(event.data, event.raw) for event in events]


blocks = st.sampled_from(
    [
        b'data: {"a": 1}\n\n',
        b"data: [DONE]\n\n",
        b"data:{}\n\n",
        b": comment\n\n",
        b"data: one\ndata: two\n\n",
        b"data: crlf\r\n\r\n",
        b"\n\n",
        b"\n",
        b"event: x\ndata: y\n\n",
        b"data: \n\n",
    ]
)


@given(st.lists(st.lists(blocks, min_size=1, max_size=4), max_size=8))
def test_reads_of_whole_events_parse_as_one_byte_at_a_time(reads):
    # Whole single-line LF events take the fast path (one split); anything else the
    # general one: the events and their raw bytes must not tell them apart.
    data = [b"".join(read) for read in reads]
    one_byte = [bytes([b]) for b in b"".join(data)]
    assert events_of(SSEParser(), data) == events_of(SSEParser(), one_byte)


def test_a_read_after_a_partial_event_takes_the_general_path():
    parser = SSEParser()
    assert parser.feed(b"data: par") == []
    assert [(e.data, e.raw) for e in parser.feed(b"tial\n\ndata: next\n\n")] == [
        (b"partial", b"data: partial\n\n"),
        (b"next", b"data: next\n\n"),
    ]
