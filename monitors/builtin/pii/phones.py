"""Phone numbers: which candidates libphonenumber accepts, and the shapes that are no phone."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Chosen by population and market size before any measurement, not from the test data.
PHONE_REGIONS: tuple[str, ...] = (
    "US",
    "CA",
    "MX",
    "BR",
    "AR",
    "GB",
    "IE",
    "DE",
    "FR",
    "IT",
    "ES",
    "NL",
    "PL",
    "RU",
    "TR",
    "SA",
    "AE",
    "ZA",
    "NG",
    "KE",
    "EG",
    "IN",
    "PK",
    "BD",
    "CN",
    "JP",
    "KR",
    "ID",
    "PH",
    "AU",
    "NZ",
)


# Decimals (3.14159 265), year ranges (1941-2011) and the SSN shape (its own rule decides)
# that some region would accept as a number.
NOT_A_PHONE = re.compile(
    r"[1-9]\d{0,2}\.\d{4,}.*|(?:1[89]|20)\d\d[ -](?:1[89]|20)\d\d"
    r"|\d{3}([- ])\d\d\1\d{4}"
)


_RECENT_MAX = 512
_RANGE = re.compile(r"([1-9]\d{2,5}) ?[-–] ?([1-9]\d{2,5})")


def is_range(candidate: str) -> bool:
    """Two numbers joined by a dash, the second larger ("81546-82011", "5317-6046"): a range
    of values, pages or years. A phone number split by a dash starts with 0 in most
    national formats, and its halves are rarely in ascending order by accident. (Where the
    sentence says "phone", the words decide: "by phone at 741-2345".)"""
    match = _RANGE.fullmatch(candidate)
    return match is not None and int(match.group(1)) < int(match.group(2))


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
        if NOT_A_PHONE.fullmatch(candidate) or is_range(candidate):
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


def cued_phone_ok(value: str) -> bool:
    # Introduced as a phone number, five digits are enough (many regions' local numbers are
    # that short), but a date or a decimal is still no phone.
    return (
        5 <= sum(c.isdigit() for c in value) <= 15
        and NOT_A_PHONE.fullmatch(value) is None
        and re.fullmatch(r"\d{4}-\d\d-\d\d", value) is None
    )


def phone_ok(match: str) -> bool:
    # E.164 allows at most 15 digits; fewer than 8 is more likely a code or a count.
    return 8 <= sum(c.isdigit() for c in match) <= 15
