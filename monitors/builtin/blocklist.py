"""Blocklist: keywords (whole words) and regular expressions, any case unless told otherwise.

Options::

    keywords: [forbidden phrase, other]      # matched as whole words
    patterns: ['\\bproject\\s+zeus\\b']      # Python regexes
    file: /etc/taxgate/blocklist.txt        # one entry per line; `re:` marks a regex;
                                            # blank lines and `#` comments are skipped
    lists: [jailbreak]                      # lists shipped in monitors/builtin/lists/
    case_sensitive: false                   # true: patterns match as written (keywords
                                            # always ignore case)

Patterns ignore case by default: "Ignore previous instructions" is the same attack as
"ignore previous instructions", and a blocklist that misses it fails open. A pattern
can still ask for case with an inline ``(?-i:...)`` group.
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
LISTS_DIR = Path(__file__).parent / "lists"
SHIPPED_LISTS = tuple(sorted(p.stem for p in LISTS_DIR.glob("*.txt")))


class BlocklistOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = []
    patterns: list[str] = []
    file: Path | None = None
    lists: list[str] = []
    case_sensitive: bool = False


def read_entries(path: Path) -> tuple[list[str], list[str]]:
    """``(keywords, patterns)`` from a blocklist file."""
    keywords: list[str] = []
    patterns: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(_REGEX_PREFIX):
            patterns.append(line[len(_REGEX_PREFIX) :].strip())
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
        self._inline = inline

    @property
    def inline(self) -> bool:
        """Keywords alone compile to escaped alternations, safe on the event loop; a
        user's own regex could backtrack badly, so with one the check runs in a worker
        thread (``create`` passes ``inline`` accordingly)."""
        return self._inline

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for regex in self._regexes:
            spans.extend(Span(m.start(), m.end(), LABEL) for m in regex.finditer(text) if m.end() > m.start())
        return sorted(spans, key=lambda s: s.start)

    def hold(self, text: str, start: int = 0) -> int:
        """Streaming: hold exactly a possible partial match at the end of the text."""
        return pattern_hold(self._partial, text, start)

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
    files = [] if options.file is None else [options.file]
    for name in options.lists:
        if name not in SHIPPED_LISTS:
            raise MonitorLoadError(
                f"monitor {spec.id!r}: no shipped blocklist {name!r}; shipped: {', '.join(SHIPPED_LISTS) or 'none'}"
            )
        files.append(LISTS_DIR / f"{name}.txt")
    for path in files:
        try:
            file_keywords, file_patterns = read_entries(path)
        except OSError as exc:
            raise MonitorLoadError(f"monitor {spec.id!r}: cannot read blocklist file {path}: {exc}") from exc
        keywords += file_keywords
        patterns += file_patterns
    flags = 0 if options.case_sensitive else re.IGNORECASE
    regexes: list[re.Pattern[str]] = []
    combined = keyword_regex(keywords)
    if combined is not None:
        regexes.append(combined)
    for pattern in patterns:
        try:
            regexes.append(re.compile(pattern, flags))
        except re.error as exc:
            raise MonitorLoadError(f"monitor {spec.id!r}: invalid blocklist pattern {pattern!r}: {exc}") from exc
    if not regexes:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: blocklist is empty; give `keywords`, `patterns`, `file` or `lists`"
        )
    return BlocklistMonitor(regexes, inline=not patterns)
