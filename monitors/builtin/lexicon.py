"""The Obscenity lexicon's hits, found with one translate and one regex search per clean text.

pyobscenity's ``RegexMatcher`` runs every character through each transformer in Python
and then one regex per term (126 blacklisted, 200 whitelisted): about 1 ms per 100
characters, whatever the text. This matcher gives the same spans from the same dataset
and transformer tables (a unit test compares them on the bundled dataset and generated
text) for a fraction of that:

- The transformers act on one character at a time, so their composition is a character
  table, applied with ``str.translate``. Each character maps to exactly one (checked when
  the table is built), so a match's offsets in the transformed text are the original's.
  The collapse-repeats transformer is left out: ``RegexMatcher`` feeds it one character
  per call and it resets itself on each call, so it never drops a character ("fuuuck" is
  no hit there either) -- a test holds that.
- A term's pattern can only match where its longest required literal occurs, so a
  prefilter on the literal's rarest two-character piece, then a substring test, picks
  the few candidates; only those run their own regex, with the non-overlapping
  ``finditer`` pyobscenity runs, and only a text with a hit pays for the whitelist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import regex

from monitors.base import MonitorLoadError

Table = dict[int, str]
_META = regex.compile(r"[.^$*+?{}\[\]\\|()]")
Transform = Callable[[str], str]


def char_table(transforms: Sequence[Transform], candidates: Iterable[str]) -> Table:
    """The ``str.translate`` table of ``transforms`` applied in order to each single character.

    ``candidates`` must hold every character that some transform changes; the others map
    to themselves and are left out of the table.
    """
    table: Table = {}
    for char in set(candidates):
        out = char
        for transform in transforms:
            out = "".join(transform(c) for c in out)
        if len(out) != 1:
            raise ValueError(f"transform maps {char!r} to {out!r}: offsets would shift")
        if out != char:
            table[ord(char)] = out
    return table


_ENGLISH_ORDER = "etaoinsrhldcumfpgwybvkxjqz"


def _rarity(pair: str) -> int:
    # Rarer letters pick fewer texts: file a term under its least common pair (a space or
    # a digit counts as common).
    return sum(max(_ENGLISH_ORDER.find(c), 0) for c in pair)


def _surrogate_end(text: str, end: int) -> int:
    # As pyobscenity does: a match ending inside a UTF-16 surrogate pair takes the pair whole.
    if end < len(text) and 0xD800 <= ord(text[end - 1]) <= 0xDBFF and 0xDC00 <= ord(text[end]) <= 0xDFFF:
        return end + 1
    return end


class LexiconMatcher:
    """Spans ``(start, end)`` of blacklisted terms not overlapping a whitelisted term."""

    """``blacklist`` holds each term's regex and a literal every match of it contains."""

    def __init__(
        self,
        blacklist: Sequence[tuple[str, str]],
        whitelist: Sequence[str],
        blacklist_table: Table,
        whitelist_table: Table,
    ) -> None:
        # Each term filed under one two-character piece of its literal: a text lacking that
        # piece cannot match it, and a text's pieces are one set built per call, so the
        # prefilter costs a set and a few dict lookups, not a substring test per term.
        self._by_pair: dict[str, list[tuple[str, regex.Pattern]]] = {}
        self._always: list[tuple[str, regex.Pattern]] = []
        for source, literal in blacklist:
            entry = (literal, regex.compile(source))
            if len(literal) < 2:
                self._always.append(entry)
            else:
                pair = max((literal[i : i + 2] for i in range(len(literal) - 1)), key=_rarity)
                self._by_pair.setdefault(pair, []).append(entry)
        self._pairs = list(self._by_pair.items())
        # A whitelisted term without metacharacters matches only where it occurs verbatim.
        self._white = [("" if _META.search(p) else p, regex.compile(p)) for p in whitelist]
        self._black_table = blacklist_table
        self._white_table = whitelist_table

    def __call__(self, text: str) -> list[tuple[int, int]]:
        transformed = text.translate(self._black_table)
        # ~80 substring tests beat building the set of a window's ~100 pairs.
        candidates = [entry for pair, entries in self._pairs if pair in transformed for entry in entries]
        hits = {
            (m.start(), _surrogate_end(text, m.end()))
            for literal, pattern in self._always + candidates
            if literal in transformed
            for m in pattern.finditer(transformed)
        }
        if not hits:
            return []
        allowed = self._whitelisted(text)
        return sorted(hit for hit in hits if not _overlaps(hit, allowed))

    def _whitelisted(self, text: str) -> list[tuple[int, int]]:
        transformed = text.translate(self._white_table)
        return [
            (m.start(), _surrogate_end(text, m.end()))
            for literal, pattern in self._white
            if literal in transformed
            for m in pattern.finditer(transformed)
        ]


def _overlaps(span: tuple[int, int], intervals: list[tuple[int, int]]) -> bool:
    start, end = span
    return any(w_start < end and start < w_end for w_start, w_end in intervals)


def obscenity() -> LexiconMatcher:
    """The English preset of pyobscenity: its dataset, confusables, leetspeak and lowercase."""
    from pyobscenity import (
        english_dataset,
        english_recommended_blacklist_transformers,
        english_recommended_whitelist_transformers,
    )
    from pyobscenity.transformers import (
        CollapseDuplicateTransformer,
        LowercaseTransformer,
        RemapCharacterTransformer,
    )

    built = english_dataset.build()
    mapped: set[str] = set()

    def per_char(transformers) -> list[Transform]:
        out = []
        for transformer in transformers:
            if isinstance(transformer, CollapseDuplicateTransformer):
                continue  # a no-op inside RegexMatcher (see the module docstring)
            if isinstance(transformer, RemapCharacterTransformer):
                mapped.update(transformer.mapping)
            elif not isinstance(transformer, LowercaseTransformer):
                raise MonitorLoadError(
                    f"pyobscenity's preset changed: transformer {type(transformer).__name__} is not supported"
                )
            out.append(transformer.transform_func)
        return out

    black = per_char(english_recommended_blacklist_transformers)
    white = per_char(english_recommended_whitelist_transformers)
    candidates = mapped | lowercase_changes()
    try:
        tables = char_table(black, candidates), char_table(white, candidates)
    except ValueError as exc:
        raise MonitorLoadError(f"pyobscenity's preset changed: {exc}") from exc
    return LexiconMatcher(
        [(_source(term["pattern"]), required_literal(term["pattern"])) for term in built["blacklisted_terms"]],
        [_source(term["pattern"]) for term in built["whitelisted_terms"]],
        *tables,
    )


def _source(pattern) -> str:
    # As RegexMatcher compiles a term: a parsed pattern's regex, or the string itself.
    return pattern.as_regex() if hasattr(pattern, "as_regex") else pattern


def required_literal(pattern) -> str:
    """The longest literal every match of a parsed pattern contains ('' if none: always tried).

    Its top-level literal nodes are required (optional ones sit inside OptionalNode), and
    ``as_regex`` writes them as exact code points, matched case-sensitively.
    """
    from pyobscenity.pattern import LiteralNode

    # as_regex writes a code point as two hex digits: one above 0xff would not read back
    # as itself, so such a literal is no safe filter.
    literals = [
        "".join(map(chr, node.chars))
        for node in pattern.nodes
        if isinstance(node, LiteralNode) and max(node.chars, default=0) <= 0xFF
    ]
    return max(literals, key=len, default="")


def lowercase_changes() -> set[str]:
    """Every character that ``str.lower`` changes (about 1,400; a scan of all of Unicode)."""
    return {c for c in map(chr, range(0x110000)) if c.lower() != c}
