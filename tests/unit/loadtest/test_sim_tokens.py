"""The simulator's stand-in tokeniser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.sim.tokens import (
    CHAT_TOKENS_PER_MESSAGE,
    count_chat_tokens,
    count_tokens,
    decode,
    encode,
    tokenize,
)


def test_words_and_punctuation_carry_their_leading_space():
    assert tokenize("Hello, world!") == ["Hello", ",", " world", "!"]


def test_digits_split_in_threes_and_long_words_in_twelves():
    assert tokenize("4111 1111") == ["411", "1", " 111", "1"]
    assert tokenize("internationalisation") == ["internationa", "lisation"]


def test_secrets_straddle_several_tokens():
    # Output monitors must see a key arrive in pieces, as with a real tokeniser.
    assert len(tokenize("ghp_abcdefghijklmnopqrstuvwxyz0123456789")) > 3


def test_trailing_whitespace_is_kept():
    assert tokenize("ok  \n") == ["ok", "  \n"]
    assert tokenize("") == []


@given(st.text())
def test_joining_tokens_gives_the_text_back(text):
    assert "".join(tokenize(text)) == text


@given(st.text())
def test_count_matches_tokenize(text):
    assert count_tokens(text) == len(tokenize(text))


def test_chat_prompt_adds_template_overhead_per_message():
    assert count_chat_tokens(["Hi", "Hello there"]) == 3 + 2 * CHAT_TOKENS_PER_MESSAGE


@given(st.text())
def test_token_ids_decode_back_to_the_text(text):
    ids = encode(text)
    assert len(ids) >= count_tokens(text)
    assert all(0 < token_id < 2**57 for token_id in ids)
    assert decode(ids) == text


def test_short_tokens_take_one_id_each():
    assert len(encode("say hello now")) == count_tokens("say hello now") == 3


@pytest.mark.parametrize("bad", [0, 1, -5, True, int.from_bytes(b"\x02ab", "big"), 2**64])
def test_ids_that_are_no_token_are_refused(bad):
    with pytest.raises(ValueError, match="out of vocabulary"):
        decode([encode("ok")[0], bad])


def test_ids_that_split_a_character_are_refused():
    with pytest.raises(ValueError, match="UTF-8"):
        decode([int.from_bytes(b"\x01\xc3", "big")])
