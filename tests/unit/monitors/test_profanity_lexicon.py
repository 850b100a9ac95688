"""The fast lexicon finds exactly pyobscenity's RegexMatcher hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitors.builtin import lexicon

DATA = Path(__file__).resolve().parents[3] / "loadtest" / "data"


@pytest.fixture(scope="module")
def reference():
    """pyobscenity's own matcher, as the monitor used it before: each span once, sorted."""
    from pyobscenity import (
        english_dataset,
        english_recommended_blacklist_transformers,
        english_recommended_whitelist_transformers,
    )
    from pyobscenity.matcher import RegexMatcher

    built = english_dataset.build()
    matcher = RegexMatcher(
        blacklisted_terms=built["blacklisted_terms"],
        whitelisted_terms=built["whitelisted_terms"],
        blacklist_transformers=english_recommended_blacklist_transformers,
        whitelist_transformers=english_recommended_whitelist_transformers,
    )
    return lambda text: sorted({(m.startIndex, m.endIndex) for m in matcher.get_all_matches(text)})


@pytest.fixture(scope="module")
def fast():
    return lexicon.obscenity()


def test_same_hits_on_the_bundled_dataset(fast, reference):
    texts = [
        json.loads(line)["text"]
        for path in sorted(DATA.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    assert len(texts) > 600
    hits = 0
    for text in texts:
        assert fast(text) == reference(text), text
        hits += bool(reference(text))
    assert hits > 20  # the comparison covers texts with hits, not only clean ones


@pytest.mark.parametrize(
    "text",
    [
        "fuck",
        "FUCK you",
        "f*ck off",
        "what a sh1t show",
        "shitfacefucker",
        "ｆｕｃｋ",
        "ⓕⓤⓒⓚ",
        "fuuuuuck",
        "shiiiit",  # repeats are not collapsed inside RegexMatcher: no hit in either
        "I grew up in Scunthorpe.",
        "kung fu panda",
        "fu",
        "Moby Dick",
        "moby-dick",
        "dickens",
        "pen is mightier",
        "penis",
        "İstanbul sex",
        "ΣΕΞ",
        "sex\ud83d\ude00",
        "shit\ud83d\ude00x",
        "",
        " ",
        "\n\n",
        "a" * 300,
    ],
)
def test_same_hits_on_known_cases(fast, reference, text):
    assert fast(text) == reference(text)


def _words() -> list[str]:
    from pyobscenity import english_dataset

    built = english_dataset.build()
    out = [term["pattern"] for term in built["whitelisted_terms"]]
    for term in built["blacklisted_terms"]:
        out.append("".join("".join(map(chr, getattr(node, "chars", []))) for node in term["pattern"].nodes))
    return out


WORDS = _words()
# Characters the transformers remap (leetspeak, a few confusables, case) and ones that
# border words or surrogate pairs, so the generated text exercises every table and edge.
CHARS = st.sampled_from(list("aeiouscktfnr @$!|0134567()/*-'. \nAÉİΣσｆⓤ🅒ķ\ud83d\ude00"))
PIECE = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(str.upper),
    st.sampled_from(WORDS).map(lambda w: w.replace("i", "1").replace("s", "$").replace("o", "0")),
    st.text(CHARS, max_size=6),
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECE, max_size=12).map("".join))
def test_same_hits_on_generated_text(fast, reference, text):
    assert fast(text) == reference(text)


def test_char_table_refuses_a_transform_that_shifts_offsets():
    with pytest.raises(ValueError, match="offsets would shift"):
        lexicon.char_table([str.lower], ["İ"])  # lowercases to two characters
    assert lexicon.char_table([str.lower], ["A", "b"]) == {ord("A"): "a"}
