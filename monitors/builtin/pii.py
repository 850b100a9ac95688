"""Personal data and secrets: emails, phones, cards, IBANs, SSNs, IPv4s, API keys.

Regexes find candidates; checksums (Luhn for cards, mod-97 for IBANs) and range
checks keep ordinary numbers out. Each finding carries spans, so the natural action
is ``redact``. Options::

    kinds: [EMAIL, CREDIT_CARD]   # restrict to these (default: all)
    phone_regions: [US, GB, AU]   # regions whose national formats count as phones
                                  # (default PHONE_REGIONS); [] keeps only the US and + rules

Phones: North American and ``+`` numbers by pattern; then any other run of digits
that looks like a phone number is a candidate, kept only when Google's libphonenumber
(the ``phonenumbers`` package) says it is a valid number in one of ``phone_regions``.

When candidates of two kinds overlap, the more specific kind wins (an API key over
a phone number that happens to sit inside it), in the order of ``KINDS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from monitors.base import Finding, Monitor, Span
from monitors.config import MonitorSpec
from monitors.holds import compile_partial, pattern_hold
from monitors.registry import parse_options

Kind = Literal["API_KEY", "IBAN", "CREDIT_CARD", "US_SSN", "EMAIL", "IPV4", "PHONE"]
# Precedence order for overlapping candidates: most specific first.
KINDS: tuple[Kind, ...] = ("API_KEY", "IBAN", "CREDIT_CARD", "US_SSN", "EMAIL", "IPV4", "PHONE")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    iban = "".join(candidate.split()).upper()
    if not 15 <= len(iban) <= 34 or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_ok(match: str) -> bool:
    # E.164 allows at most 15 digits; fewer than 8 is more likely a code or a count.
    return 8 <= sum(c.isdigit() for c in match) <= 15


def _email_ok(match: str) -> bool:
    # A local part of four or more digits first is a Usenet Message-ID or a ticket id
    # (<199710291922.LAA07101@wall.org>), not somebody's mailbox.
    return re.match(r"\d{4}", match) is None


# A value that tells the reader what to put there ("your-secret-key", "<API_KEY>",
# "xxxxxxxx", "changeme") is a placeholder in an example, not a secret.
_PLACEHOLDER = re.compile(r"your[-_].*|<[^>]*>?|[x*.]{4,}|.*(?:placeholder|changeme|change[-_]me).*",
                          re.IGNORECASE)


def _secret_ok(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value) is None


# Chosen by population and market size before any measurement, not from the test data.
PHONE_REGIONS: tuple[str, ...] = ("US", "CA", "MX", "BR", "AR", "GB", "IE", "DE", "FR", "IT",
                                  "ES", "NL", "PL", "RU", "TR", "SA", "AE", "ZA", "NG", "KE",
                                  "EG", "IN", "PK", "BD", "CN", "JP", "KR", "ID", "PH", "AU",
                                  "NZ")


# Decimals (3.14159 265), year ranges (1941-2011) and the SSN shape (its own rule decides)
# that some region would accept as a number.
_NOT_A_PHONE = re.compile(r"[1-9]\d{0,2}\.\d{4,}.*|(?:1[89]|20)\d\d[ -](?:1[89]|20)\d\d"
                          r"|\d{3}([- ])\d\d\1\d{4}")


_RECENT_MAX = 512


class PhoneCheck:
    """A phone candidate is valid when libphonenumber accepts it in one of ``regions``.

    ``+`` numbers carry their country; others are tried as each region's national format.
    """

    def __init__(self, regions: Sequence[str]) -> None:
        import phonenumbers

        self._phonenumbers = phonenumbers
        self._regions = tuple(regions)
        # A stream's checks read the same number again in each window that holds it, and
        # libphonenumber costs tens of microseconds a region: verdicts of recent candidates.
        self._recent: dict[str, bool] = {}

    def __call__(self, candidate: str) -> bool:
        verdict = self._recent.get(candidate)
        if verdict is None:
            if len(self._recent) >= _RECENT_MAX:
                self._recent.clear()
            verdict = self._recent[candidate] = self._valid(candidate)
        return verdict

    def _valid(self, candidate: str) -> bool:
        # Seven digits fit some region's local numbers, but far more often a count or a code.
        if not 8 <= sum(c.isdigit() for c in candidate) <= 15:
            return False
        if candidate[0] not in "+(0" and candidate.isdigit():
            return False  # a bare run of digits is more often an id, an amount or a count
        if _NOT_A_PHONE.fullmatch(candidate):
            return False
        pn = self._phonenumbers
        regions = (None,) if candidate.startswith("+") else self._regions
        for region in regions:
            try:
                number = pn.parse(candidate, region)
            except pn.NumberParseException:
                continue
            if pn.is_valid_number(number):
                return True
        return False


def _cued_phone_ok(value: str) -> bool:
    # Introduced as a phone number, five digits are enough (many regions' local numbers are
    # that short), but a date or a decimal is still no phone.
    return 5 <= sum(c.isdigit() for c in value) <= 15 and _NOT_A_PHONE.fullmatch(value) is None \
        and re.fullmatch(r"\d{4}-\d\d-\d\d", value) is None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


@dataclass(frozen=True)
class Rule:
    """A candidate pattern for one kind; ``group`` is the part to mask, ``valid`` a post-check of it."""

    kind: Kind
    pattern: str
    flags: int = 0
    group: int | str = 0
    valid: Callable[[str], bool] | None = None
    # "phone": the detector's PhoneCheck validates (its regions come from the options).
    check: Literal["phone"] | None = None
    # Cheap necessary conditions, so that a check of ordinary prose runs almost no rule
    # (streams check at every word, mostly text with no digit, ``@`` or ``=`` in it):
    # ``needs``, a pattern found in every match (find skips the rule for a text without
    # it); ``starts``, the characters a match can begin with, given where that set is
    # small (a hold skips the rule when none is in the unreleased text, often a word or
    # two). Both are property-tested to hold for every match.
    needs: str | None = None
    starts: str | None = None


RULES: tuple[Rule, ...] = (
    # Secrets. Vendor formats first; then `key = value` assignments, masking only the value.
    Rule("API_KEY", r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
         needs="AKIA|ASIA", starts="A"),
    Rule("API_KEY", r"(?<![\w-])gh[pousr]_[A-Za-z0-9]{36,255}(?!\w)", needs="gh[pousr]_",
         starts="g"),
    Rule("API_KEY", r"(?<![\w-])github_pat_[A-Za-z0-9_]{22,255}", needs="github_pat_", starts="g"),
    Rule("API_KEY", r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}", needs="sk-", starts="s"),
    Rule("API_KEY", r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}", needs="xox", starts="x"),
    Rule("API_KEY", r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])", needs="AIza", starts="A"),
    # A private key with no END line yet (a streamed window) is masked to the end of the text.
    Rule("API_KEY", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)",
         re.DOTALL, needs="-----BEGIN ", starts="-"),
    Rule("API_KEY",
         r"\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|password|passwd|pwd"
         r"|access[_-]?token|auth[_-]?token|refresh[_-]?token)[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"',;]{4,})",
         re.IGNORECASE, group="value", valid=_secret_ok, needs="[:=]", starts="(?i:[acprs])"),
    Rule("API_KEY", r"\bbearer\s+(?P<value>[A-Za-z0-9._~+/-]{20,}=*)", re.IGNORECASE, group="value",
         valid=_secret_ok, needs="(?i:bearer)", starts="[bB]"),
    # IBAN: country, check digits, then groups of four (upper case, optionally spaced).
    Rule("IBAN", r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
         valid=iban_valid, needs=r"\d", starts="[A-Z]"),
    # 13-19 digits, single spaces or dashes between them, not part of a longer number.
    Rule("CREDIT_CARD", r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)", valid=_card_ok,
         needs=r"\d", starts=r"\d"),
    # Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
    Rule("US_SSN", r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])",
         needs=r"\d", starts=r"\d"),
    Rule("EMAIL",
         r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
         r"[A-Za-z]{2,63}(?![\w-])", valid=_email_ok, needs="@"),
    # A dotted quad written as a version ("v1.2.3.4", "revision 1.12.2.1" in a CVS log) is
    # a version number, not an address.
    Rule("IPV4", rf"(?<![\d.vV])(?<!(?i:version) )(?<!(?i:revision) )(?<!(?i:release) )"
                 rf"(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)", needs=r"\d", starts=r"\d"),
    # North American numbers need a separator or parentheses: bare 10-digit runs are too often ids.
    Rule("PHONE",
         r"(?<![\w+])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?![\w-])",
         needs=r"\d", starts=r"[+(\d]"),
    # International numbers start with + and a country code.
    # Atomic group: the digit groups can split a long digit run in thousands of ways, and
    # without it a failed match retries them all (seconds on a 50 KB prompt).
    Rule("PHONE", r"(?<![\w+])\+[1-9]\d{0,2}(?>(?:[ .-]?\(?\d{1,4}+\)?){2,6})(?![\w-])",
         valid=_phone_ok, needs=r"\+", starts=r"\+"),
    # A number the sentence introduces as a phone number ("by phone at 22 12 34", "reach
    # Ann at 5012 3456"), whatever its length or region: the words say what it is.
    Rule("PHONE", r"\b(?:(?:tele)?phone|tel|mobile|fax|reach)\b\.?[^\d\n.!?]{0,40}?"
                  r"(?<![\w+])(?P<value>(?>\+?\d{1,5}+(?:[ .-]?\d{1,5}+){0,4}))(?![\w-]|[.:/]\d)",
         re.IGNORECASE, group="value", valid=_cued_phone_ok, needs=r"\d", starts="(?i:[fmprt])"),
    # Any other phone-shaped run: a leading 0, +, or ( or a separator inside, 7-15 digits;
    # libphonenumber decides. ISO dates (2024-05-17) are left out before it is asked.
    Rule("PHONE", r"(?<![\w+.:/-])(?!\d{4}-\d\d-\d\d)(?>(?:\+|\(0?\d{1,5}\) ?)?\d{1,12}+"
                  r"(?:[ .-](?:\(\d{1,12}+\)|\d{1,12}+)){0,5})(?![\w-]|[.:/]\d)",
         check="phone", needs=r"\d", starts=r"[+(\d]"),
)


class PiiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[Kind] = list(KINDS)
    phone_regions: list[str] = list(PHONE_REGIONS)


class PiiDetector:
    """The compiled rules for the selected kinds. Pure: text in, spans out."""

    def __init__(self, kinds: Sequence[Kind] = KINDS,
                 phone_regions: Sequence[str] = PHONE_REGIONS) -> None:
        wanted = set(kinds)
        checks: dict[str, Callable[[str], bool]] = {}
        if "PHONE" in wanted and phone_regions:
            checks["phone"] = PhoneCheck(phone_regions)
        rules = [rule for kind in KINDS if kind in wanted
                 for rule in RULES if rule.kind == kind
                 if rule.check is None or rule.check in checks]
        self._needs = _Hints([rule.needs for rule in rules])
        self._starts = _Hints([rule.starts for rule in rules])
        self._rules = [(rule, re.compile(rule.pattern, rule.flags),
                        checks.get(rule.check) if rule.check else None) for rule in rules]
        self._partial = [compile_partial(rule.pattern, rule.flags) for rule in rules]

    def hold(self, text: str, start: int = 0) -> int:
        """Where a candidate that more text could complete or extend starts (streaming)."""
        maybe = self._starts.per_rule(text, start)
        return pattern_hold([partial for partial, can in zip(self._partial, maybe, strict=True) if can],
                            text, start)

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
