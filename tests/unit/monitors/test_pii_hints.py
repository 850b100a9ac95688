"""The rules' cheap prefilters (``needs``, ``starts``) never hide a match.

A wrong hint would let a secret through silently, so each is checked against the rule's
own language (hypothesis generates strings its regex matches, Unicode digits included),
and the detector with hints must find and hold exactly what it does without them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors.builtin import pii
from monitors.holds import compile_partial

HINTED = [rule for rule in pii.RULES if rule.needs or rule.starts]
DATA = Path(__file__).resolve().parents[3] / "loadtest" / "data"
around = st.text(st.sampled_from(list("ab 1+-:=@.(")), max_size=6)


def test_most_rules_have_a_hint():
    # Without hints every rule runs on every window of every stream.
    assert len(HINTED) >= len(pii.RULES) - 1


@pytest.mark.parametrize("rule", HINTED, ids=lambda rule: f"{rule.kind}:{rule.pattern[:24]}")
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_match_contains_needs_and_begins_with_starts(rule, data):
    regex = re.compile(rule.pattern, rule.flags)
    body = data.draw(st.from_regex(regex, fullmatch=True))
    assert regex.search(body) is not None  # the hints below are tested on real matches
    text = data.draw(around) + body + data.draw(around)
    for match in [*regex.finditer(body), *regex.finditer(text)]:
        if rule.needs:
            assert re.search(rule.needs, match.group(0)), (rule.needs, match.group(0))
        if rule.starts:
            assert re.match(rule.starts, match.group(0)), (rule.starts, match.group(0))
    if rule.starts:
        # A hold also sees partial matches: every cut of the text is a stream's window.
        partial = compile_partial(rule.pattern, rule.flags)
        for cut in range(len(text) + 1):
            for match in partial.finditer(text[:cut], partial=True):
                if match.group(0):
                    assert re.match(rule.starts, match.group(0)), (rule.starts, match.group(0))


@pytest.fixture
def unhinted(monkeypatch) -> pii.PiiDetector:
    bare = tuple(dataclasses.replace(rule, needs=None, starts=None) for rule in pii.RULES)
    monkeypatch.setattr(pii, "RULES", bare)
    return pii.PiiDetector()


def test_hints_change_no_finding_or_hold_on_the_bundled_texts(unhinted):
    hinted = pii.PiiDetector()
    texts = [
        json.loads(line)["text"]
        for path in sorted(DATA.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(texts) > 500
    for text in texts:
        assert hinted.find(text) == unhinted.find(text), text
        for cut in range(0, len(text), 7):
            window = text[:cut]
            for start in (0, max(0, cut - 9)):
                assert hinted.hold(window, start) == unhinted.hold(window, start), (window, start)
