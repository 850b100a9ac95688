"""National identity and tax numbers, each confirmed by its check digit where it has one.

A number with a strong check (the French NIR's mod-97 key, the Spanish DNI's letter,
the Italian codice fiscale's check character) or a distinctive shape (a UK National
Insurance number, an Indian PAN, a Brazilian CPF as 000.000.000-00, an Aadhaar number
as 0000 0000 0000) is found wherever it stands. A bare run of digits with a weak check
(1 in 10 or 11 random numbers pass: German Steuer-ID, Dutch BSN, Japanese My Number,
a CPF or an Aadhaar number without its punctuation, a US SSN without dashes) counts
only after words that introduce it ("Steuer-ID", "BSN", "my SSN is", "national ID
number"), within 30 characters and no sentence end between: alone, one 9-12 digit
order or invoice number in ten would be masked.
"""

from __future__ import annotations

from collections.abc import Callable

from monitors.builtin.pii import checksums
from monitors.builtin.pii.rule import Kind, Rule

# Words that name any identity number, in the languages of the kinds below.
_ANY_ID = (
    r"national\s+id(?:entity|entification)?(?:\s+(?:number|no\.?|card))?|id(?:entity|entification)?"
    r"\s+(?:number|no\.?|card)|personal\s+(?:id|number)|citizen(?:\s+id)?|tax\s+(?:id|number)|\bID\b"
)
# Up to 30 characters between the words and the number: no digit, no sentence end.
_GAP = r"[^\d\n.!?]{0,30}?"


def _cued(kind: Kind, cue: str, value: str, valid: Callable[[str], bool], starts: str, unbounded: str = "") -> Rule:
    """A number that counts only after words naming it (``cue``, or ``unbounded``: words of a
    script written without spaces), masking only the number."""
    words = rf"(?i:\b(?:{cue}|{_ANY_ID})\b(?:\s*(?:no|nr|number)\b)?\.?)" + (f"|{unbounded}" if unbounded else "")
    # ASCII edges: in Japanese the number touches the words around it ("マイナンバーは…です").
    return Rule(
        kind,
        rf"(?:{words}){_GAP}(?<![0-9A-Za-z_.-])(?P<value>{value})(?![0-9A-Za-z_-]|[.,]\d)",
        group="value",
        valid=valid,
        needs=r"[0-9]",
        starts=starts,
    )


_ANY_ID_STARTS = "ncpitINCPIT"

NATIONAL_RULES: tuple[Rule, ...] = (
    # UK National Insurance number: two letters (not D, F, I, Q, U, V; the second not O;
    # never BG, GB, KN, NK, NT, TN), six digits, A-D; spaced in pairs or not.
    # (Issued numbers end in A-D; any letter is taken, as test-data generators write others.)
    Rule(
        "UK_NINO",
        r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r"(?: ?[0-9]{2}){3} ?[A-Z](?![A-Za-z0-9])",
        needs=r"[0-9]",
        starts="[A-Z]",
    ),
    _cued(
        "DE_TAX_ID",
        r"steuer[- ]?(?:id|identifikationsnummer|nummer)|identifikationsnummer|idnr|tin",
        r"[1-9][0-9](?: ?[0-9]{3}){3}",
        checksums.de_tax_id_valid,
        f"[sS{_ANY_ID_STARTS}]",
    ),
    # French NIR: sex, year, month, department (2A/2B in Corsica), commune, order, key.
    Rule(
        "FR_NIR",
        r"(?<![0-9A-Za-z])[1278] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}"
        r"(?![0-9A-Za-z])",
        valid=checksums.fr_nir_valid,
        needs=r"[0-9]",
        starts="[1278]",
    ),
    # Spanish DNI (8 digits) or NIE (X/Y/Z and 7 digits), then the control letter.
    Rule(
        "ES_DNI",
        r"(?<![0-9A-Za-z])(?:[0-9]{8}|[XYZ]-?[0-9]{7})[- ]?[A-HJ-NP-TV-Z](?![0-9A-Za-z])",
        valid=checksums.es_dni_valid,
        needs=r"[0-9]",
        starts="[0-9XYZ]",
    ),
    # Italian codice fiscale: surname, name, birth date and place, check letter (digits may
    # be letters, for the rare duplicate).
    Rule(
        "IT_FISCAL_CODE",
        r"(?<![0-9A-Za-z])[A-Z]{6}[0-9LMNP-V]{2}[ABCDEHLMPRST][0-9LMNP-V]{2}[A-Z]"
        r"[0-9LMNP-V]{3}[A-Z](?![0-9A-Za-z])",
        valid=checksums.it_fiscal_code_valid,
        starts="[A-Z]",
    ),
    _cued(
        "NL_BSN",
        r"bsn|burgerservicenummer|sofi(?:nummer)?|citizen\s+service\s+number",
        r"[0-9]{4}\.[0-9]{2}\.[0-9]{3}|[0-9]{3}[ .]?[0-9]{3}[ .]?[0-9]{3}",
        checksums.nl_bsn_valid,
        f"[bBsS{_ANY_ID_STARTS}]",
    ),
    Rule(
        "BR_CPF",
        r"(?<![0-9.])[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}(?![0-9])",
        valid=checksums.br_cpf_valid,
        needs=r"[0-9]",
        starts="[0-9]",
    ),
    _cued("BR_CPF", r"cpf|cadastro\s+de\s+pessoas", r"[0-9]{11}", checksums.br_cpf_valid, f"[cC{_ANY_ID_STARTS}]"),
    Rule(
        "IN_AADHAAR",
        r"(?<![0-9])[2-9][0-9]{3}([ -])[0-9]{4}\1[0-9]{4}(?![0-9])",
        valid=checksums.aadhaar_valid,
        needs=r"[0-9]",
        starts="[2-9]",
    ),
    _cued(
        "IN_AADHAAR",
        r"aadha?ar|uidai|uid",
        r"[1-9][0-9]{3}[ -]?[0-9]{4}[ -]?[0-9]{4}",
        checksums.aadhaar_valid,
        f"[aAuU{_ANY_ID_STARTS}]",
    ),
    # Indian PAN: three letters, the holder's type (P person, C company...), a letter,
    # four digits, a letter.
    Rule(
        "IN_PAN",
        r"(?<![0-9A-Za-z])[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z](?![0-9A-Za-z])",
        needs=r"[0-9]",
        starts="[A-Z]",
    ),
    _cued(
        "JP_MY_NUMBER",
        r"my\s*number",
        r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}",
        checksums.jp_my_number_valid,
        f"[mMマ個{_ANY_ID_STARTS}]",
        unbounded="マイナンバー|個人番号",
    ),
    # A US SSN written as nine bare digits: only after words that name it.
    Rule(
        "US_SSN",
        r"(?i:\bssn\b|\bsocial\s+security(?:\s+(?:number|no\b))?|\bss\s?#)\.?"
        rf"{_GAP}(?<![\w-])(?P<value>[0-9]{{9}})(?![\w-])",
        group="value",
        valid=checksums.us_ssn_valid,
        needs=r"[0-9]",
        starts="[sS]",
    ),
)
