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
