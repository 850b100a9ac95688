"""Splitting long texts for a served model's context: every character read, no part too long."""

from __future__ import annotations

import random

import pytest

from monitors.textparts import split_spans, split_text


def test_a_text_that_fits_is_one_part():
    assert split_text("short text", 64) == ["short text"]
    assert split_text("", 64) == [""]


def test_parts_fit_the_byte_budget_and_end_at_whitespace():
    text = " ".join(f"word{i}" for i in range(200))
    parts = split_text(text, 100, overlap=0)
    assert len(parts) > 1
    assert all(len(part.encode()) <= 100 for part in parts)
    assert all(part.endswith(" ") for part in parts[:-1])
    assert "".join(parts) == text  # no overlap: the parts are the text


def test_the_budget_counts_utf8_bytes_not_characters():
    text = "é" * 100 + "日本語" * 50  # 2 and 3 bytes a character
    parts = split_text(text, 64)
    assert all(len(part.encode()) <= 64 for part in parts)
    assert "".join(parts) == text


def test_overlap_repeats_the_cut_words_in_the_next_part():
    text = " ".join(f"w{i:03d}" for i in range(100))
    parts = split_text(text, 60, overlap=20)
    for before, after in zip(parts, parts[1:], strict=False):
        first_word = after.split()[0]
        assert first_word in before  # the next part starts inside the previous one
        assert after[0] != " "


@pytest.mark.parametrize("seed", range(30))
def test_every_character_is_in_some_part_in_order(seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", " ", "\n", "é", "💥", "日"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
    budget, overlap = rng.randint(4, 80), rng.randint(0, 40)
    spans = split_spans(text, budget, overlap)
    assert all(len(text[start:end].encode()) <= budget for start, end in spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (start, end), (next_start, next_end) in zip(spans, spans[1:], strict=False):
        assert start < next_start <= end < next_end  # no gap, always progress


def test_a_budget_below_one_character_is_refused():
    with pytest.raises(ValueError):
        split_text("abc", 3)
