"""Blocklist: keywords (case-insensitive, whole words) and regular expressions.

Options::

    keywords: [forbidden phrase, other]      # matched as whole words, any case
    patterns: ['\\bproject\\s+zeus\\b']      # Python regexes, as written
    file: /etc/taxgate/blocklist.txt        # one entry per line; `re:` marks a regex;
                                            # blank lines and `#` comments are skipped
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from monitors.base import Finding, Monitor, MonitorLoadError, Span
from monitors.config import MonitorSpec
from monitors.holds import compile_partial, pattern_hold
from monitors.registry import parse_options

LABEL = "BLOCKLIST"
_REGEX_PREFIX = "re:"


class BlocklistOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = []
    patterns: list[str] = []
    file: Path | None = None


def read_entries(path: Path) -> tuple[list[str], list[str]]:
    """``(keywords, patterns)`` from a blocklist file."""
    keywords: list[str] = []
    patterns: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(_REGEX_PREFIX):
            patterns.append(line[len(_REGEX_PREFIX):].strip())
        else:
            keywords.append(line)
    return keywords, patterns


def keyword_regex(keywords: Sequence[str]) -> re.Pattern[str] | None:
    """One alternation for all keywords; longest first so a longer phrase wins over its prefix."""
    words = sorted({k.strip() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        return None
    # Lookarounds instead of \b so keywords that start or end with punctuation still work.
    alternation = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)


class BlocklistMonitor(Monitor):
    def __init__(self, regexes: Sequence[re.Pattern[str]], *, inline: bool = False) -> None:
        self._regexes = list(regexes)
        self._partial = [compile_partial(r.pattern, r.flags) for r in self._regexes]
        # Keywords alone compile to escaped alternations, safe on the event loop; a
        # user's own regex could backtrack badly, so it runs in the worker thread.
        self.inline = inline

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for regex in self._regexes:
            spans.extend(Span(m.start(), m.end(), LABEL) for m in regex.finditer(text) if m.end() > m.start())
        return sorted(spans, key=lambda s: s.start)

    def hold(self, text: str) -> int:
        """Streaming: hold exactly a possible partial match at the end of the text."""
        return pattern_hold(self._partial, text)

    def check(self, texts: Sequence[str]) -> list[Finding]:
        findings = []
        for text in texts:
            spans = self.find(text)
            score = 1.0 if spans else 0.0
            findings.append(Finding(score=score, labels={"blocklist": score}, spans=tuple(spans)))
        return findings


def create(spec: MonitorSpec) -> BlocklistMonitor:
    options = parse_options(spec, BlocklistOptions)
    keywords = list(options.keywords)
    patterns = list(options.patterns)
    if options.file is not None:
        try:
            file_keywords, file_patterns = read_entries(options.file)
        except OSError as exc:
            raise MonitorLoadError(f"monitor {spec.id!r}: cannot read blocklist file {options.file}: {exc}") from exc
        keywords += file_keywords
        patterns += file_patterns
    regexes: list[re.Pattern[str]] = []
    combined = keyword_regex(keywords)
    if combined is not None:
        regexes.append(combined)
    for pattern in patterns:
        try:
            regexes.append(re.compile(pattern))
        except re.error as exc:
            raise MonitorLoadError(f"monitor {spec.id!r}: invalid blocklist pattern {pattern!r}: {exc}") from exc
    if not regexes:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: blocklist is empty; give `keywords`, `patterns` or `file`"
        )
    return BlocklistMonitor(regexes, inline=not patterns)
