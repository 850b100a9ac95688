"""Personal data and secrets: emails, phones, cards, IBANs, national ID numbers, IPv4s, keys, passwords.

Regexes find candidates; checksums (Luhn for cards, mod-97 for IBANs and the French
NIR, each national number's own check digit) and range checks keep ordinary numbers
out. Each finding carries spans, so the natural action is ``redact``. Options::

    kinds: [EMAIL, CREDIT_CARD]   # restrict to these (default: all of KINDS)
    phone_regions: [US, GB, AU]   # regions whose national formats count as phones
                                  # (default PHONE_REGIONS); [] keeps only the US and + rules

Kinds: ``API_KEY`` (vendor formats: AWS, GitHub, OpenAI, Stripe ``sk_``/``rk_``, Slack,
Google, private keys; ``key = value`` assignments), ``PASSWORD`` (a password in prose,
a ``--password`` flag, ``DB_PASSWORD=``, a URL's ``user:password@``), ``IBAN``,
``CREDIT_CARD`` (12-19 digits with Luhn; 12 only in Maestro's ranges), ``UK_NINO``,
``DE_TAX_ID``, ``FR_NIR``, ``ES_DNI`` (and NIE), ``IT_FISCAL_CODE``, ``NL_BSN``,
``BR_CPF``, ``IN_AADHAAR``, ``IN_PAN``, ``JP_MY_NUMBER``, ``US_SSN``, ``EMAIL``, ``IPV4``,
``PHONE``. National numbers with a weak check count only after words that name them
(see ``national``).

Phones: North American and ``+`` numbers by pattern; then any other run of digits
that looks like a phone number is a candidate, kept only when Google's libphonenumber
(the ``phonenumbers`` package) says it is a valid number in one of ``phone_regions``.

When candidates of two kinds overlap, the more specific kind wins (an API key over
a phone number that happens to sit inside it), in the order of ``KINDS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from monitors.base import Finding, Monitor, Span
from monitors.builtin.pii.checksums import iban_valid, luhn_valid
from monitors.builtin.pii.phones import PHONE_REGIONS, PhoneCheck
from monitors.builtin.pii.rule import KINDS, Kind, Rule
from monitors.builtin.pii.rules import RULES
from monitors.config import MonitorSpec
from monitors.holds import compile_partial, pattern_hold
from monitors.registry import parse_options

__all__ = [
    "KINDS",
    "PHONE_REGIONS",
    "RULES",
    "Kind",
    "PhoneCheck",
    "PiiDetector",
    "PiiMonitor",
    "PiiOptions",
    "Rule",
    "create",
    "iban_valid",
    "luhn_valid",
]


class PiiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[Kind] = list(KINDS)
    phone_regions: list[str] = list(PHONE_REGIONS)


class PiiDetector:
    """The compiled rules for the selected kinds. Pure: text in, spans out."""

    def __init__(self, kinds: Sequence[Kind] = KINDS, phone_regions: Sequence[str] = PHONE_REGIONS) -> None:
        wanted = set(kinds)
        checks: dict[str, Callable[[str], bool]] = {}
        if "PHONE" in wanted and phone_regions:
            checks["phone"] = PhoneCheck(phone_regions)
        rules = [
            rule
            for kind in KINDS
            if kind in wanted
            for rule in RULES
            if rule.kind == kind
            if rule.check is None or rule.check in checks
        ]
        self._needs = _Hints([rule.needs for rule in rules])
        self._starts = _Hints([rule.starts for rule in rules])
        self._rules = [
            (rule, re.compile(rule.pattern, rule.flags), checks.get(rule.check) if rule.check else None)
            for rule in rules
        ]
        self._partial = [compile_partial(rule.pattern, rule.flags) for rule in rules]

    def hold(self, text: str, start: int = 0) -> int:
        """Where a candidate that more text could complete or extend starts (streaming)."""
        maybe = self._starts.per_rule(text, start)
        return pattern_hold([partial for partial, can in zip(self._partial, maybe, strict=True) if can], text, start)

    def find(self, text: str) -> list[Span]:
        accepted: list[Span] = []
        for (rule, regex, check), maybe in zip(self._rules, self._needs.per_rule(text), strict=True):
            if not maybe:
                continue
            for match in regex.finditer(text):
                start, end = match.span(rule.group)
                if end <= start or any(s.start <= start and end <= s.end for s in accepted):
                    continue  # inside a span of a more specific kind found earlier
                if rule.valid is not None and not rule.valid(match.group(rule.group)):
                    continue
                if check is not None and not check(match.group(0)):
                    continue
                # A partial overlap is kept: redaction merges the two, so no character of
                # either leaks; the order of the rules only decides the label.
                accepted.append(Span(start, end, rule.kind))
        return sorted(accepted, key=lambda s: s.start)


class _Hints:
    """Per rule, whether its hint occurs in a text: each distinct hint searched once a call,
    and none of them when their union finds nothing (most text a stream checks)."""

    def __init__(self, hints: Sequence[str | None]) -> None:
        distinct = list(dict.fromkeys(h for h in hints if h is not None))
        self._patterns = [re.compile(h) for h in distinct]
        self._index = [distinct.index(h) if h is not None else -1 for h in hints]
        self._any = re.compile("|".join(f"(?:{h})" for h in distinct)) if distinct else None
        self._all = [True] * len(hints)

    def per_rule(self, text: str, start: int = 0) -> list[bool]:
        if self._any is None:
            return self._all
        if self._any.search(text, start) is None:
            return [i < 0 for i in self._index]
        found = [pattern.search(text, start) is not None for pattern in self._patterns]
        return [i < 0 or found[i] for i in self._index]


class PiiMonitor(Monitor):
    def __init__(self, detector: PiiDetector) -> None:
        self._detector = detector

    @property
    def inline(self) -> bool:
        return True  # our own linear regexes: microseconds, cheaper than a thread hop

    def hold(self, text: str, start: int = 0) -> int:
        return self._detector.hold(text, start)

    def check(self, texts: Sequence[str]) -> list[Finding]:
        findings = []
        for text in texts:
            spans = self._detector.find(text)
            labels = {span.label: 1.0 for span in spans}
            findings.append(Finding(score=1.0 if spans else 0.0, labels=labels, spans=tuple(spans)))
        return findings


def create(spec: MonitorSpec) -> PiiMonitor:
    options = parse_options(spec, PiiOptions)
    return PiiMonitor(PiiDetector(options.kinds, options.phone_regions))
