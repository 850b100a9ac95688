from __future__ import annotations

import re

import pytest

from monitors.base import MonitorLoadError
from monitors.builtin import profanity
from monitors.config import MonitorSpec


@pytest.fixture(scope="module")
def monitor():
    return profanity.create(MonitorSpec(name="profanity"))


def test_insults_score_high_and_benign_text_low(monitor):
    insults = ["you are a worthless loser", "shut up you dumb bitch", "fuck you, you worthless piece of shit"]
    benign = [
        "have a nice day",
        "The weather in Paris is lovely in spring.",
        "I will review the pull request tomorrow morning.",
    ]
    findings = monitor.check(insults + benign)
    assert [f.score > 0.9 for f in findings[:3]] == [True] * 3
    assert [f.score < 0.5 for f in findings[3:]] == [True] * 3
    # "fuck"/"shit" are in the lexicon: score 1 with their spans; the model's own score stays a label.
    assert findings[2].score == 1.0 and findings[2].labels["lexicon"] == 1.0
    assert [text[s.start : s.end] for s in findings[2].spans for text in [insults[2]]] == ["fuck", "shit"]
    assert all(0.0 <= f.labels["profanity"] <= 1.0 for f in findings)
    assert all("lexicon" not in f.labels and f.score == f.labels["profanity"] for f in findings[3:])
    assert all(isinstance(f.score, float) for f in findings)


def test_empty_batch(monitor):
    assert monitor.check([]) == []


def test_rejects_options():
    with pytest.raises(MonitorLoadError, match="threshhold"):
        profanity.create(MonitorSpec(name="profanity", threshhold=0.3))


def test_segments_split_sentences_and_window_long_ones():
    assert profanity.segments("One. Two!\nThree? four", 200) == ["One.", "Two!", "Three?", "four"]
    windows = profanity.segments("x" * 250, 100)
    assert windows == ["x" * 100] * 4  # starts 0, 50, 100, 150: the last one ends at 250
    assert profanity.segments("   ", 100) == ["   "]


def test_a_long_text_no_longer_dilutes_an_insult():
    # The model alone (no lexicon), so only the segmenting differs between the two monitors.
    filler = "Here is a long and perfectly polite paragraph about gardening and tomatoes. " * 15
    text = filler + "You are a worthless piece of shit. " + filler
    whole = profanity.create(MonitorSpec(name="profanity", scoring="whole", lexicon="none"))
    segmented = profanity.create(MonitorSpec(name="profanity", lexicon="none"))
    assert whole.check([text])[0].score < 0.5
    assert segmented.check([text])[0].score > 0.9


def test_a_mild_insult_alone_is_no_profanity(monitor):
    # The model flags each of these (1.00) for the one mild word in it.
    mild = [
        "Are you stupid",
        "who wrote The Idiot",
        "Littering is dumb.",
        "Never underestimate the power of human stupidity.",
    ]
    counted = profanity.create(MonitorSpec(name="profanity", mild_words=[]))
    assert all(f.score >= 0.95 for f in counted.check(mild))
    assert all(f.score < 0.5 for f in monitor.check(mild))
    # A segment flagged for its other words stays flagged; the lexicon is untouched.
    model_only = profanity.create(MonitorSpec(name="profanity", lexicon="none"))
    assert model_only.check(["shut up you dumb bitch"])[0].score > 0.9
    assert monitor.check(["you stupid fucking idiot"])[0].score == 1.0
    # Whole-text scoring discounts them the same way.
    whole = profanity.create(MonitorSpec(name="profanity", scoring="whole"))
    assert whole.check(mild + mild[:1])[0].score < 0.5


def test_lexicon_sees_through_compounds_and_leetspeak(monitor):
    for text in ["shitfacefucker", "what a sh1t show", "f*ck off"][:2]:
        finding = monitor.check([text])[0]
        assert finding.score == 1.0 and finding.spans, text
    # Its whitelist keeps innocent words that contain a term.
    assert monitor.check(["I grew up in Scunthorpe."])[0].labels.get("lexicon") is None


def test_an_initial_or_a_title_ends_no_segment():
    assert profanity.segments("A story by Philip K. Dick. Mr. Smith read it.", 200) == [
        "A story by Philip K. Dick.",
        "Mr. Smith read it.",
    ]


def test_a_capitalised_term_after_a_middle_initial_is_a_surname(monitor):
    assert monitor.check(["Have you read Philip K. Dick?"])[0].labels.get("lexicon") is None
    assert monitor.check(["you are a dick"])[0].labels.get("lexicon") == 1.0
    assert profanity.is_surname("by K. Dick", 6, 10) and not profanity.is_surname("by K. dick", 6, 10)


def test_a_stream_holds_an_unfinished_sentence_only_while_it_reads_as_flagged(monitor):
    # "Shut" alone scores as an insult (0.98); the sentence it begins need not: hold it
    # to its end. A benign fragment leaves a word at a time.
    assert monitor.check(["Shut "])[0].score >= 0.5 > monitor.check(["Open the door, "])[0].score
    assert monitor.hold("Fine. Shut th", 0) == len("Fine. ")
    assert monitor.hold("Fine. Open the door, ple", 0) == len("Fine. Open the door, ")
    assert monitor.hold("Fine. Shut the door, please. Th", 0) == len("Fine. Shut the door, please. ")
    # The sentence is judged from its start even when some of it left already, and what
    # left stays out: the rest of it waits.
    assert monitor.hold("Fine. Shut th", 10) == 10
    assert monitor.hold("Fine. Open the do", 11) == len("Fine. Open the ")
    long = "shut " * 60  # past a segment's width only the partial word stays held
    assert monitor.hold(long + "par", 0) == len(long)


def test_scores_are_the_same_whether_a_segment_was_scored_before_or_not():
    calls = []

    def predict(texts):
        calls.append(list(texts))
        return [len(t) / 100 for t in texts]

    fresh = profanity.ProfanityMonitor(predict, lexicon=None)
    first = fresh.check(["One two. Three four", "Three four"])
    assert [f.score for f in first] == [0.1, 0.1]
    assert calls == [["One two.", "Three four"]]  # each segment scored once
    again = fresh.check(["One two. Three four five"])
    assert [f.score for f in again] == [0.15]
    assert calls[-1] == ["Three four five"]  # only the new one


def test_a_full_cache_is_emptied_without_losing_the_scores_of_the_check_in_hand(monkeypatch):
    monkeypatch.setattr(profanity, "_RECENT_MAX", 2)
    fresh = profanity.ProfanityMonitor(lambda texts: [len(t) / 100 for t in texts], lexicon=None)
    fresh.check(["Aa. Bbb. Cccc."])  # three segments: past the bound
    # "Aa." is known, "Ddddd." is new: the cache is emptied as the new score arrives.
    assert [f.score for f in fresh.check(["Aa. Ddddd."])] == [0.06]
    assert [f.score for f in fresh.check(["Aa."])] == [0.03]


def test_the_lexicon_reads_each_sentence_once_and_finds_what_the_whole_text_gives(monitor):
    from monitors.builtin import lexicon as obscenity

    whole = obscenity.obscenity()
    read: list[str] = []

    def counting(text):
        read.append(text)
        return whole(text)

    fresh = profanity.ProfanityMonitor(lambda texts: [0.0] * len(texts), lexicon=counting)
    stream = "Well. What the fuck is this shit? Nothing; a cock and bull story.\nThe end"
    for cut in range(1, len(stream) + 1):  # a stream's windows: every prefix, as it grows
        (finding,) = fresh.check([stream[:cut]])
        expected = [hit for hit in whole(stream[:cut]) if not profanity.is_surname(stream[:cut], *hit)]
        assert [(s.start, s.end) for s in finding.spans] == expected, stream[:cut]
    # Every sentence string is read once, however many windows contain it.
    assert len(read) == len(set(read))
    assert "What the fuck is this shit?" in read and "a cock and bull story." in read


def test_lexicon_hits_per_sentence_match_the_whole_text_on_the_bundled_data():
    import json
    from pathlib import Path

    from monitors.builtin import lexicon as obscenity

    whole = obscenity.obscenity()
    fresh = profanity.ProfanityMonitor(lambda texts: [0.0] * len(texts), lexicon=whole)
    data = Path(__file__).resolve().parents[3] / "loadtest" / "data"
    texts = [
        json.loads(line)["text"]
        for path in sorted(data.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").split("\n")
        if line.strip()
    ]
    assert len(texts) > 500
    for text in texts:
        (finding,) = fresh.check([text])
        expected = [hit for hit in whole(text) if not profanity.is_surname(text, *hit)]
        assert [(s.start, s.end) for s in finding.spans] == expected, text


def test_a_stream_must_reach_back_a_segment_to_read_a_sentence_whole(monitor):
    # MonitorPipeline.context_chars takes this as how far a check's context reaches back.
    assert monitor.context_chars == 200
    assert profanity.create(MonitorSpec(name="profanity", segment_chars=80)).context_chars == 80
    assert profanity.create(MonitorSpec(name="profanity", scoring="whole")).context_chars == 0


def test_a_number_is_never_read_as_leetspeak(monitor):
    from tests.unit.monitors.numbers_in_text import numbers_in_text

    # A number alone blocks nothing: the text scores as it does with the digits spelt as a
    # word. Before the rule, about 1 in 800 such texts was blocked (the leetspeak table read
    # "455" as "ass"); 100,000 of them are measured in the monitor's note.
    checked = 0
    for number, text in numbers_in_text(5_000, seed=7):
        finding = monitor.check([text])[0]
        spelt = text.replace(number, re.sub(r"\d+", "many", number), 1)
        assert (finding.score >= 0.95) == (monitor.check([spelt])[0].score >= 0.95), text
        assert not any(number in text[s.start : s.end] or text[s.start : s.end] in number for s in finding.spans), text
        checked += 1
    assert checked == 5_000


def test_digits_inside_a_word_are_still_leetspeak(monitor):
    for text in ["what a sh1t show", "you a55hole"]:
        assert monitor.check([text])[0].spans, text
    for text in [
        "We had 455 visitors in March.",
        "Room 717, floor 7.",
        "Call extension 4550 please.",
        "Use version 3.455.1",
        "It costs $455.",
        "Ref (455).",
    ]:
        finding = monitor.check([text])[0]
        assert not finding.spans and finding.score < 0.95, text
