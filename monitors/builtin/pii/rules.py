"""The PII rules: a candidate pattern per kind, and the checks that keep ordinary text out.

Secrets, payment cards, e-mail, IP addresses and phones are here; national identity
numbers in ``national``; check digits in ``checksums``; libphonenumber's verdicts in
``phones``. ``RULES`` is in precedence order (see ``KINDS``).
"""

from __future__ import annotations

__all__ = ["KINDS", "RULES", "Kind", "Rule", "card_ok", "email_ok", "password_ok", "secret_ok"]

import re

from monitors.builtin.pii.checksums import iban_valid, luhn_valid
from monitors.builtin.pii.national import NATIONAL_RULES
from monitors.builtin.pii.phones import cued_phone_ok, phone_ok
from monitors.builtin.pii.rule import KINDS, Kind, Rule

# Maestro's ranges (and 0604, an old UK one): the only cards issued with 12 digits (Luhn alone passes one 12-digit
# number in ten, too many ids and amounts).
_TWELVE_DIGIT_CARD = re.compile(r"50|5[6-9]|6|0604")


def card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    if len(digits) == 12:
        return _TWELVE_DIGIT_CARD.match(digits) is not None and luhn_valid(digits)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def email_ok(match: str) -> bool:
    # A local part of four or more digits first is a Usenet Message-ID or a ticket id
    # (<199710291922.LAA07101@wall.org>), not somebody's mailbox.
    return re.match(r"\d{4}", match) is None


# A value that tells the reader what to put there ("your-secret-key", "<API_KEY>",
# "xxxxxxxx", "changeme", "password" in "postgres://user:password@host") is a
# placeholder in an example, not a secret.
_PLACEHOLDER = re.compile(
    r"your[-_].*|<[^>]*>?|[x*.]{4,}|(?-i:\$\{?[A-Z_][A-Z0-9_]*\}?)|\{\{.*"
    r"|.*(?:placeholder|changeme|change[-_]me).*"
    r"|pass(?:word|wd)?|secret|pwd|example|redacted|\*+",
    re.IGNORECASE,
)


def secret_ok(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value) is None


def password_ok(value: str) -> bool:
    """A value written in prose after "password is" that looks like one: six or more
    characters with a digit or a symbol in them ("the password is incorrect" has none),
    no placeholder, no URL."""
    return (
        6 <= len(value) <= 64
        and secret_ok(value)
        and "://" not in value
        and any(not c.isalpha() for c in value)
        and len(set(value)) > 2
    )


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


# Passwords in other shapes than ``password=``: prose ("my password is Tr0ub4dor&3", "the
# password for the router was ..."), command-line flags, environment variables with a
# prefix (DB_PASSWORD=...), and the password of a URL's user info. The value must look
# like a password (``password_ok``) where the words alone could be ordinary prose.
_PASSWORD_WORD = r"(?:pass(?:word|wd|phrase|code)|pwd)"
_VALUE = r"[\"'“‘]?(?P<value>[^\s\"'”’,;]{3,63}[^\s\"'”’,;.!?:)\]])"
PASSWORD_RULES: tuple[Rule, ...] = (
    Rule(
        "PASSWORD",
        rf"\b{_PASSWORD_WORD}\b(?:\s+(?!is\b|was\b)[^\s:=]{{1,30}}){{0,4}}?"
        rf"\s+(?:is|was|will\s+be|would\s+be|remains|(?:set|changed|reset)\s+to)\s*[:=]?\s*{_VALUE}",
        re.IGNORECASE,
        group="value",
        valid=password_ok,
        needs="(?i:p(?:ass|wd))",
        starts="(?i:p)",
    ),
    Rule(
        "PASSWORD",
        rf"\b{_PASSWORD_WORD}\b\s+(?:(?:of|as)\s+)?{_VALUE}",
        re.IGNORECASE,
        group="value",
        valid=password_ok,
        needs="(?i:p(?:ass|wd))",
        starts="(?i:p)",
    ),
    Rule(
        "PASSWORD",
        r"(?<![\w-])--?(?:pass(?:word|wd)?|pwd)[= ]+[\"']?(?P<value>[^\s\"']{4,})",
        re.IGNORECASE,
        group="value",
        valid=secret_ok,
        needs="(?i:-p)",
        starts="-",
    ),
    Rule(
        "PASSWORD",
        r"(?<![A-Za-z0-9])[A-Za-z0-9]+_(?:pass(?:word|wd)?|pwd|secret|token|api_?key)[\"']?\s*[:=]\s*"
        r"[\"']?(?P<value>[^\s\"',;]{4,})",
        re.IGNORECASE,
        group="value",
        valid=secret_ok,
        needs="[:=]",
    ),
    Rule(
        "PASSWORD",
        r"(?i:\b[a-z][a-z0-9+.-]{1,15}://)[^\s:/@]{1,64}:(?P<value>[^\s:/@]{1,128})@",
        group="value",
        valid=secret_ok,
        needs="://",
        starts="(?i:[a-z])",
    ),
)


RULES: tuple[Rule, ...] = (
    # Secrets. Vendor formats first; then `key = value` assignments, masking only the value.
    Rule("API_KEY", r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])", needs="AKIA|ASIA", starts="A"),
    Rule("API_KEY", r"(?<![\w-])gh[pousr]_[A-Za-z0-9]{36,255}(?!\w)", needs="gh[pousr]_", starts="g"),
    Rule("API_KEY", r"(?<![\w-])github_pat_[A-Za-z0-9_]{22,255}", needs="github_pat_", starts="g"),
    Rule("API_KEY", r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}", needs="sk-", starts="s"),
    # Stripe's secret and restricted keys (live and test) and webhook secrets; publishable
    # keys (pk_) are meant to be public.
    Rule(
        "API_KEY",
        r"(?<![\w-])[rs]k_(?:live|test)_[A-Za-z0-9]{16,247}(?![\w-])",
        needs="[rs]k_(?:live|test)_",
        starts="[rs]",
    ),
    Rule("API_KEY", r"(?<![\w-])whsec_[A-Za-z0-9+/=]{24,}", needs="whsec_", starts="w"),
    Rule("API_KEY", r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}", needs="xox", starts="x"),
    Rule("API_KEY", r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])", needs="AIza", starts="A"),
    # A private key with no END line yet (a streamed window) is masked to the end of the text.
    Rule(
        "API_KEY",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)",
        re.DOTALL,
        needs="-----BEGIN ",
        starts="-",
    ),
    Rule(
        "API_KEY",
        r"\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|password|passwd|pwd"
        r"|access[_-]?token|auth[_-]?token|refresh[_-]?token)[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"',;]{4,})",
        re.IGNORECASE,
        group="value",
        valid=secret_ok,
        needs="[:=]",
        starts="(?i:[acprs])",
    ),
    *PASSWORD_RULES,
    Rule(
        "API_KEY",
        r"\bbearer\s+(?P<value>[A-Za-z0-9._~+/-]{20,}=*)",
        re.IGNORECASE,
        group="value",
        valid=secret_ok,
        needs="(?i:bearer)",
        starts="[bB]",
    ),
    # IBAN: country, check digits, then groups of four (upper case, optionally spaced).
    Rule(
        "IBAN",
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
        valid=iban_valid,
        needs=r"\d",
        starts="[A-Z]",
    ),
    # Written without separators, a card is found even when another number follows it
    # after a space (the rule below reads "4801139826744 132" as one 16-digit run).
    Rule("CREDIT_CARD", r"(?<![\d-])\d{12,19}(?![\d-])", valid=card_ok, needs=r"\d", starts=r"\d"),
    # 12-19 digits, single spaces or dashes between them, not part of a longer number.
    Rule("CREDIT_CARD", r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){11,18}(?![ -]?\d)", valid=card_ok, needs=r"\d", starts=r"\d"),
    *NATIONAL_RULES,
    # Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
    Rule(
        "US_SSN",
        r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])",
        needs=r"\d",
        starts=r"\d",
    ),
    Rule(
        "EMAIL",
        r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
        r"[A-Za-z]{2,63}(?![\w-])",
        valid=email_ok,
        needs="@",
    ),
    # A dotted quad written as a version ("v1.2.3.4", "revision 1.12.2.1" in a CVS log) is
    # a version number, not an address.
    Rule(
        "IPV4",
        rf"(?<![\d.vV])(?<!(?i:version) )(?<!(?i:revision) )(?<!(?i:release) )"
        rf"(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)",
        needs=r"\d",
        starts=r"\d",
    ),
    # North American numbers need a separator or parentheses: bare 10-digit runs are too often ids.
    Rule(
        "PHONE",
        r"(?<![\w+])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}"
        r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?![\w-])",
        needs=r"\d",
        starts=r"[+(\d]",
    ),
    # International numbers start with + and a country code.
    # Atomic group: the digit groups can split a long digit run in thousands of ways, and
    # without it a failed match retries them all (seconds on a 50 KB prompt).
    Rule(
        "PHONE",
        r"(?<![\w+])\+[1-9]\d{0,2}(?>(?:[ .-]?\(?\d{1,4}+\)?){2,6})(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?![\w-])",
        valid=phone_ok,
        needs=r"\+",
        starts=r"\+",
    ),
    # A number the sentence introduces as a phone number ("by phone at 22 12 34", "reach
    # Ann at 5012 3456"), whatever its length or region: the words say what it is.
    Rule(
        "PHONE",
        r"\b(?:(?:tele)?phone|tel|mobile|fax|reach)\b\.?[^\d\n.!?]{0,40}?"
        r"(?<![\w+])(?P<value>(?>\+?\d{1,5}+(?:[ .-]?\d{1,5}+){0,4}))(?![\w-]|[.:/]\d)",
        re.IGNORECASE,
        group="value",
        valid=cued_phone_ok,
        needs=r"\d",
        starts="(?i:[fmprt])",
    ),
    # Any other phone-shaped run: a leading 0, +, or ( or a separator inside, 7-15 digits;
    # libphonenumber decides. ISO dates (2024-05-17) are left out before it is asked.
    Rule(
        "PHONE",
        r"(?<![\w+.:/-])(?!\d{4}-\d\d-\d\d)(?>(?:\+|\(0?\d{1,5}\)[ -]?)?\d{1,12}+"
        r"(?:[ .-](?:\(\d{1,12}+\)|\d{1,12}+)){0,5})(?![\w-]|[.:/]\d)",
        check="phone",
        needs=r"\d",
        starts=r"[+(\d]",
    ),
)
