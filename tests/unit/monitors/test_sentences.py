from __future__ import annotations

from monitors.sentences import last_sentence_start, sentences


def test_sentences_end_at_punctuation_and_line_breaks_not_at_initials_or_titles():
    text = "Philip K. Dick met Mr. Smith. Then; later!\nDone?  yes"
    assert [text[a:b] for a, b in sentences(text)] == [
        "Philip K. Dick met Mr. Smith.",
        "Then;",
        "later!",
        "Done?",
        "yes",
    ]
    assert sentences("   ") == []


def test_the_last_sentence_start_in_a_range():
    text = "One. Two is here. Three"
    assert last_sentence_start(text, 0, len(text)) == text.index("Three")
    assert last_sentence_start(text, 0, text.index("Three") - 3) == text.index("Two")
    # A full stop just before the range still ends the sentence (the look-behind reads it).
    assert last_sentence_start(text, text.index(" Two"), text.index("Two") + 1) == text.index("Two")
    assert last_sentence_start(text, text.index("Two"), text.index("Three") - 2) is None
    # "?”" ends no sentence: quotes stay with the sentence, so the stream agrees with it.
    assert last_sentence_start("Why?” he said. Go", 0, 17) == 15
