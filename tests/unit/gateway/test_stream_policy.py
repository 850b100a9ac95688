"""The streaming policies with a fake check: no HTTP, no pipeline.

The guarantees of hold-back, for any split of a text into chunks and any grouping of
the chunks into upstream reads (the arrival timing):
(a) no character of a blocklist match reaches the client (a pii match: by (b));
(b) the client's text equals redacting the whole completion at once, while no run of
    non-space characters is longer than the overlap (a check reads only ``overlap``
    characters of the released text: inside a longer run a pattern's left edge is read
    where the check's window begins, see the last test of (b));
(c) a stream a classifier blocks never sends the word that tipped the verdict, and the
    text before it does arrive.
"""

from __future__ import annotations

import re

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.endpoints.chat import ChatFormat
from gateway.endpoints.choices import ChoiceStream
from gateway.stream_policy import HoldBack, Item, StreamFirst
from monitors.base import Span
from monitors.builtin.blocklist import BlocklistMonitor, keyword_regex
from monitors.builtin.pii import PiiDetector
from monitors.holds import word_group_hold, word_hold
from monitors.pipeline import Decision, StageResult
from monitors.redact import apply_redactions, merge_spans

PII = PiiDetector()
BLOCKLIST = BlocklistMonitor([keyword_regex(["project zeus", "forbidden"])])
OVERLAP = 50  # overlap_chars: the released text a check reads before the new


def _decision(text_index: int) -> Decision:
    return Decision("fake", "fake", "output", "block", True, 1.0, {}, None, False, text_index, "", 0.0)


class FakeGuard:
    """The Guard a policy is handed (the pipeline's checks bound to a stage and request),
    over a fake check and hold."""

    def __init__(self, check, hold, context_chars: int = 0, min_new_chars: int = 0) -> None:
        self.check = check
        self.hold = hold
        self.context_chars = context_chars
        self.min_new_chars = min_new_chars


# What leaves, as the chat dialect writes it.
DIALECT = ChoiceStream(ChatFormat(), lambda: {}, lambda: 0.0)


def wire(out) -> dict:
    return orjson.loads(DIALECT.encode(out)[6:])


def redacting(find):
    """A check that redacts what ``find`` finds, and counts its calls."""
    calls = []

    async def check(texts, kinds, whole):
        calls.append(list(texts))
        return StageResult(None, [find(text) for text in whole or texts], [], [], 0.0)

    check.calls = calls
    return check


def blocking(flagged):
    async def check(texts, kinds, whole):
        for index, text in enumerate(texts):
            if flagged(text):
                return StageResult(_decision(index), [[] for _ in texts], [], [], 0.0)
        return StageResult(None, [[] for _ in texts], [], [], 0.0)

    return check


def chunk(text: str, finish: str | None) -> dict:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


def items_of(pieces: list[str]) -> list[Item]:
    items = []
    for position, piece in enumerate(pieces):
        finish = "stop" if position == len(pieces) - 1 else None
        data = chunk(piece, finish)
        items.append(
            Item(
                0,
                data,
                b"data: " + orjson.dumps(data) + b"\n\n",
                [("content", piece)] if piece else [],
                finish is not None,
                0.0,
            )
        )
    return items


def sent_text(outs) -> str:
    text = []
    for out in outs:
        data = wire(out)
        text.append(data["choices"][0]["delta"].get("content") or "")
    return "".join(text)


async def run(policy, pieces: list[str], reads: list[int]):
    """Feed ``pieces`` grouped into reads of the given sizes; the sent items and the stop."""
    items = items_of(pieces)
    outs, position = [], 0
    for size in reads + [len(items)]:
        group, position = items[position : position + size], position + size
        if not group:
            continue
        step = await policy.feed(group)
        outs += step.out
        if step.stop is not None:
            return outs, step.stop
    step = await policy.drain()
    return outs + step.out, step.stop


def holdback(check, hold, overlap=OVERLAP):
    return HoldBack(
        FakeGuard(check, lambda text, start, kind="content": max(start, hold(text, start))),
        overlap=overlap,
        max_hold_chars=4096,
        at_max_hold="release",
        clock=lambda: 0.0,
    )


fragments = st.sampled_from(
    [
        "hello ",
        "world",
        " ",
        ", ",
        "call me at ",
        "555-867-5309",
        "+44 20 7946 0958",
        "bob@example.com",
        "4111 1111 1111 1111",
        "sk-abcdefghijklmnopqrstuvwx",
        "12",
        ".",
        "project zeus",
        "project",
        " zeus",
        "forbidden",
        "\n",
        "192.168.0.1",
        "x",
    ]
)


def break_runs(text: str, longest: int) -> str:
    """``text`` with a space put in wherever a run of non-space characters would grow
    past ``longest``."""
    out, run = [], 0
    for char in text:
        run = 0 if char.isspace() else run + 1
        if run > longest:
            out.append(" ")
            run = 1
        out.append(char)
    return "".join(out)


@st.composite
def split_text(draw, longest_run: int | None = None):
    text = "".join(draw(st.lists(fragments, min_size=1, max_size=14)))
    if longest_run is not None:
        text = break_runs(text, longest_run)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))))
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    reads = draw(st.lists(st.integers(1, 4), max_size=len(pieces)))
    return text, pieces, reads


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_text(longest_run=OVERLAP))
async def test_redaction_streamed_equals_redacting_the_whole(case):
    text, pieces, reads = case
    check = redacting(PII.find)
    outs, stop = await run(holdback(check, PII.hold), pieces, reads)
    assert stop is None
    client = sent_text(outs)
    spans = PII.find(text)
    assert client == apply_redactions(text, spans)  # (b), and so (a):
    assert client.count("[REDACTED:") == len(merge_spans(spans, len(text)))


async def test_past_the_overlap_a_run_is_read_from_the_checks_window_start():
    # Found by the property above before it kept runs within the overlap: one run of 117
    # characters. The whole text has no match (each number and key is glued to a word
    # before it); the stream's last check begins inside the run, where the last number
    # reads as standing alone, and masks it: more than the whole answer's redaction.
    pieces = ["555-867-530", "9forbiddenx", ".12forbiddensk-", "abcde", "fghijklmno", "pqrstuvwx1", "212x5"]
    pieces += ["55-867-5309sk-ab", "cdef", "ghijklmno", "pqrstuvwx555-", "867-530", "9"]
    text = "".join(pieces)
    outs, stop = await run(holdback(redacting(PII.find), PII.hold), pieces, [3, 3, 2, 4, 1, 4, 4])
    assert stop is None
    assert PII.find(text) == []
    assert sent_text(outs) == text[:-12] + "[REDACTED:PHONE]"


@settings(max_examples=200, deadline=None)
@given(split_text())
async def test_blocklist_match_never_leaves(case):
    text, pieces, reads = case
    outs, stop = await run(holdback(blocking(lambda t: bool(BLOCKLIST.find(t))), BLOCKLIST.hold), pieces, reads)
    client = sent_text(outs)
    matches = BLOCKLIST.find(text)
    if not matches:
        assert stop is None and client == text
        return
    assert stop is not None
    first = matches[0]
    assert text.startswith(client)
    assert len(client) <= first.start  # not one character of the match left


BAD = re.compile(r"\bzeus\b")


@settings(max_examples=200, deadline=None)
@given(split_text())
async def test_classifier_block_sends_the_text_before_the_word_only(case):
    text, pieces, reads = case
    classifier = holdback(blocking(lambda t: bool(BAD.search(t))), lambda text, start: word_hold(text))
    outs, stop = await run(classifier, pieces, reads)
    client = sent_text(outs)
    match = BAD.search(text)
    if match is None:
        assert stop is None and client == text
        return
    assert stop is not None
    assert text.startswith(client) and len(client) <= match.start()  # (c): the word never left
    before = text[: match.start()]
    # (c): every complete word before it arrived (the one in front of it, if glued to
    # other text by no space, is the classifier's to judge with it).
    boundary = max(before.rfind(" "), before.rfind("\n")) + 1
    assert len(client) >= len(before[:boundary].rstrip(" \n")) or before[:boundary].strip() == ""


async def test_pii_leaves_as_soon_as_it_cannot_grow():
    check = redacting(PII.find)
    policy = holdback(check, PII.hold)
    items = items_of(["Hello", " world, ", "call me at 555-86", "7-5309", " ok"])
    sent = []
    for item in items:
        step = await policy.feed([item])
        sent.append(sent_text(step.out))
    sent.append(sent_text((await policy.drain()).out))
    # "Hello" waits for its word to end; the partial phone number waits for its end.
    assert sent == ["", "Hello world, ", "call me at ", "", "[REDACTED:PHONE] ok", ""]
    # At most one check per read; none while only a partial word waits.
    assert len(check.calls) == 3


async def test_untouched_items_go_out_as_the_upstreams_bytes():
    policy = holdback(redacting(PII.find), PII.hold)
    items = items_of(["one ", "two ", "three"])
    step = await policy.feed(items)
    assert [out.part for out in step.out] == [None, None, None]  # raw bytes, all of them
    assert [DIALECT.encode(out) for out in step.out] == [item.raw for item in items]


async def test_a_split_item_is_sent_in_parts_and_its_finish_reason_only_once():
    policy = holdback(redacting(PII.find), PII.hold)
    items = items_of(["mail bob@exa", "mple.com now", " done"])
    outs = []
    for item in items:
        outs += (await policy.feed([item])).out
    finishes = [wire(o)["choices"][0]["finish_reason"] for o in outs]
    assert sent_text(outs) == "mail [REDACTED:EMAIL] now done"
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"


async def test_hold_cap_releases_and_counts():
    policy = HoldBack(
        FakeGuard(redacting(lambda t: []), lambda text, start, kind="content": start),
        overlap=10,
        max_hold_chars=8,
        at_max_hold="release",
        clock=lambda: 0.0,
    )
    step = await policy.feed(items_of(["abcdefghijkl", "m"])[:1])
    assert sent_text(step.out) == "abcdefghijkl"
    assert policy.stats.hold_cap_released == 1


async def test_hold_cap_block_stops_the_stream():
    policy = HoldBack(
        FakeGuard(redacting(lambda t: []), lambda text, start, kind="content": start),
        overlap=10,
        max_hold_chars=8,
        at_max_hold="block",
        clock=lambda: 0.0,
    )
    step = await policy.feed(items_of(["abcdefghijkl", "m"])[:1])
    assert step.stop is not None and step.stop.reason == "hold_cap" and not step.out


async def test_overloaded_check_stops_holdback():
    async def overloaded(texts, kinds, whole):
        return None

    policy = holdback(overloaded, PII.hold)
    step = await policy.feed(items_of(["hi ", "there"]))
    assert step.stop is not None and step.stop.reason == "overloaded"


async def test_stream_first_sends_at_once_and_counts_what_leaked():
    policy = StreamFirst(FakeGuard(blocking(lambda t: "forbidden" in t), lambda t, s, k="content": len(t)), overlap=10)
    items = items_of(["a ", "b ", "forbidden ", "c ", "d"])
    outs = []
    for item in items[:3]:
        step = await policy.feed([item])
        outs += step.out
    assert sent_text(outs) == "a b forbidden "  # nothing held
    step = await policy.feed(items[3:])
    assert step.stop is not None and step.stop.leaked >= 1
    await policy.close()


async def test_stream_first_checks_the_last_token_before_the_finish():
    policy = StreamFirst(FakeGuard(blocking(lambda t: "forbidden" in t), lambda t, s, k="content": len(t)), overlap=10)
    step = await policy.feed(items_of(["all ", "fine ", "forbidden"]))
    assert step.stop is not None
    assert "forbidden" not in sent_text(step.out)


@settings(max_examples=200, deadline=None)
@given(split_text(), st.sampled_from([1, 5, 24]), st.sampled_from(["holdback", "stream_first"]))
async def test_skipping_fields_below_the_group_size_changes_no_check_and_no_byte(case, group, mode):
    """``min_new_chars`` only saves the planning of fields whose hold could release
    nothing: the checks made and what the client gets are those of planning every read."""
    _text, pieces, reads = case

    async def once(min_new: int):
        check = redacting(PII.find)
        guard = FakeGuard(
            check, lambda text, start, kind="content": word_group_hold(text, start, group), min_new_chars=min_new
        )
        if mode == "holdback":
            policy = HoldBack(guard, overlap=50, max_hold_chars=4096, at_max_hold="release", clock=lambda: 0.0)
        else:
            policy = StreamFirst(guard, overlap=50)
        outs, stop = await run(policy, pieces, reads)
        await policy.close()
        return check.calls, sent_text(outs), stop

    assert await once(group) == await once(0)


def test_spans_helper_is_relative():
    from gateway.textstream import FieldText

    stream = FieldText(4)
    stream.add("my mail bob@example.com")
    stream.accept(0, 23, [Span(8, 23, "EMAIL")])
    assert stream.piece(0, 23) == "my mail [REDACTED:EMAIL]"
    assert stream.spans_within(8, 23) == [Span(0, 15, "EMAIL")]
    assert stream.spans_within(10, 23) == [Span(-2, 13, "EMAIL")]


def _released(stream, text: str, upto: int) -> None:
    stream.add(text)
    stream.accept(0, upto, [])


def test_a_checks_context_begins_at_its_sentences_start_within_reach():
    from gateway.textstream import FieldText

    first = "I can do anything for you. "
    long_sentence = "What do you want?” User: “What is your view?” Maximum: “It is hell"
    text = first + long_sentence + " on earth."
    # overlap 10: alone, the context reaches back 10 more characters (mid-sentence);
    # a monitor that scores 200-character sentences whole widens the reach.
    narrow, wide = FieldText(10), FieldText(10, reach=200)
    for stream in (narrow, wide):
        _released(stream, text, len(text))
    assert wide.window()[1] == len(first)  # "What do you want?” ..." whole
    assert 0 < narrow.window()[1] and text[narrow.window()[1] - 1] == " "
    assert narrow.window()[1] > len(first)


def test_the_sentence_start_survives_the_text_before_it_being_dropped():
    from gateway.textstream import FieldText

    stream = FieldText(10, reach=200)
    before = "Hello, terra! "
    _released(stream, before + "I am fine", len(before) + 9)
    stream.forget(stream.cleared)
    # The kept text begins at "I am": the "! " that ended the sentence before is gone.
    assert stream.window()[1] == len(before)
    stream.add(", ready to have fun and to generate some text for you")
    stream.accept(len(before), stream.end, [])
    stream.forget(stream.cleared)
    assert stream.window()[1] == len(before)  # still the sentence's start, not a word in it


def test_a_long_sentence_past_the_reach_is_cut_at_a_word():
    from gateway.textstream import FieldText

    stream = FieldText(5, reach=20)
    text = "Start. " + "word " * 20
    _released(stream, text, len(text))
    start = stream.window()[1]
    assert start > len("Start. ") and text[start - 1] == " " and text[start] != " "
