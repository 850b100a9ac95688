"""Output modes: echo, corpus, random; max_tokens and ignore_eos."""

from __future__ import annotations

import random

import pytest

from loadtest.sim.output import CorpusSource, EchoSource, RandomSource, fit
from loadtest.sim.tokens import tokenize


def test_echo_stops_naturally_at_the_end_of_the_text():
    out = EchoSource().generate("Say this back.", 100, ignore_eos=False)
    assert "".join(out.tokens) == "Say this back."
    assert out.finish_reason == "stop"


def test_echo_is_cut_at_max_tokens():
    out = EchoSource().generate("one two three four", 2, ignore_eos=False)
    assert out.tokens == ["one", " two"]
    assert out.finish_reason == "length"


def test_ignore_eos_repeats_the_text_to_exactly_max_tokens():
    out = EchoSource().generate("Hi there.", 10, ignore_eos=True)
    assert len(out.tokens) == 10
    assert "".join(out.tokens).startswith("Hi there. Hi there.")
    assert out.finish_reason == "length"


def test_empty_text_still_yields_a_token():
    out = fit([], 5, ignore_eos=False)
    assert out.tokens and out.natural_stop


def test_corpus_draws_texts_reproducibly():
    texts = ["alpha beta", "gamma delta", "epsilon"]
    first = [CorpusSource(texts, random.Random(3)).generate("", 50, False).tokens for _ in range(2)]
    assert first[0] == first[1]
    source = CorpusSource(texts, random.Random(3))
    said = {"".join(source.generate("", 50, False).tokens) for _ in range(30)}
    assert said == set(texts)


def test_corpus_needs_texts():
    with pytest.raises(ValueError):
        CorpusSource([], random.Random(0))


def test_random_mode_is_seeded_and_honours_max_tokens():
    a = RandomSource(random.Random(5)).generate("", 40, ignore_eos=True)
    b = RandomSource(random.Random(5)).generate("", 40, ignore_eos=True)
    assert a == b and len(a.tokens) == 40 and not a.natural_stop
    natural = RandomSource(random.Random(5)).generate("", 10_000, ignore_eos=False)
    assert natural.natural_stop and 16 <= len(natural.tokens) <= 256


def test_echo_tokens_are_the_tokeniser_s():
    text = "Card 4111 1111 1111 1111, thanks!"
    assert EchoSource().generate(text, 100, False).tokens == tokenize(text)
