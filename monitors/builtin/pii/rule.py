"""One PII rule: a candidate pattern for a kind, what to mask, and how to confirm it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal[
    "API_KEY",
    "PASSWORD",
    "IBAN",
    "CREDIT_CARD",
    "UK_NINO",
    "DE_TAX_ID",
    "FR_NIR",
    "ES_DNI",
    "IT_FISCAL_CODE",
    "NL_BSN",
    "BR_CPF",
    "IN_AADHAAR",
    "IN_PAN",
    "JP_MY_NUMBER",
    "US_SSN",
    "EMAIL",
    "IPV4",
    "PHONE",
]
# Precedence order for overlapping candidates (most specific first): the Literal's order.
KINDS: tuple[Kind, ...] = get_args(Kind)


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
