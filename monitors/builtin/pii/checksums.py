"""Check digits of the numbers the PII rules look for. Pure functions of a string.

Each takes the candidate as matched (separators included) and says whether its check
digit or letter is right: a random number of the same shape passes 1 time in 10
(Luhn, Verhoeff, the German tax ID's ISO 7064 MOD 11,10), 11 (Dutch BSN, Japanese My
Number), 23 (Spanish DNI), 26 (Italian codice fiscale), 97 (IBAN, French NIR) or 100
(Brazilian CPF's two digits).
"""

from __future__ import annotations

import re
from collections import Counter

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def compact(value: str) -> str:
    """The value without separators (spaces, dots, dashes, slashes)."""
    return _NOT_ALNUM.sub("", value)


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


# Verhoeff's dihedral-group tables: multiplication, permutation by position.
_VERHOEFF_D = (
    "0123456789",
    "1234067895",
    "2340178956",
    "3401289567",
    "4012395678",
    "5987604321",
    "6598710432",
    "7659821043",
    "8765932104",
    "9876543210",
)
_VERHOEFF_P = (
    "0123456789",
    "1576283094",
    "5803796142",
    "8916043527",
    "9453126870",
    "4286573901",
    "2793806415",
    "7046913258",
)


def verhoeff_valid(digits: str) -> bool:
    """Verhoeff's check (Indian Aadhaar numbers)."""
    if not digits.isascii() or not digits.isdigit():
        return False
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = int(_VERHOEFF_D[check][int(_VERHOEFF_P[position % 8][int(char)])])
    return check == 0


def aadhaar_valid(value: str) -> bool:
    """Aadhaar: 12 digits, not starting with 0 (issued ones start with 2-9), a Verhoeff check
    digit. A Luhn digit and a leading 1 are accepted too: test-data generators (Faker
    up to v40 at least) write those, and a number they made stands for an Aadhaar number
    all the same."""
    digits = compact(value)
    return len(digits) == 12 and digits[0] != "0" and (verhoeff_valid(digits) or luhn_valid(digits))


def de_tax_id_valid(value: str) -> bool:
    """German Steuer-ID: 11 digits, no leading 0, in the first ten one digit twice or three
    times and none other repeated, and an ISO 7064 MOD 11,10 check digit."""
    digits = compact(value)
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        return False
    repeated = [n for n in Counter(digits[:10]).values() if n > 1]
    if len(repeated) != 1 or repeated[0] > 3:
        return False
    product = 10
    for char in digits[:10]:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    return (11 - product) % 10 == int(digits[10])


def fr_nir_valid(value: str) -> bool:
    """French NIR (numéro de sécurité sociale): 13 characters and a key, 97 - (number mod 97).
    Corsican departments 2A and 2B count as 19 and 18."""
    nir = compact(value).upper()
    if len(nir) != 15 or nir[0] not in "12378" or not nir[13:].isdigit():
        return False
    body = nir[:13].replace("2A", "19", 1) if nir[5:7] == "2A" else nir[:13].replace("2B", "18", 1)
    if not body.isascii() or not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(nir[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_valid(value: str) -> bool:
    """Spanish DNI (8 digits) or NIE (X, Y or Z and 7 digits) and its mod-23 letter."""
    text = compact(value).upper()
    if len(text) != 9:
        return False
    number = str("XYZ".index(text[0])) + text[1:8] if text[0] in "XYZ" else text[:8]
    return number.isascii() and number.isdigit() and _DNI_LETTERS[int(number) % 23] == text[8]


_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (
            1,
            0,
            5,
            7,
            9,
            13,
            15,
            17,
            19,
            21,
            1,
            0,
            5,
            7,
            9,
            13,
            15,
            17,
            19,
            21,
            2,
            4,
            18,
            20,
            11,
            3,
            6,
            8,
            12,
            14,
            16,
            10,
            22,
            25,
            24,
            23,
        ),
        strict=True,
    )
)


def it_fiscal_code_valid(value: str) -> bool:
    """Italian codice fiscale: the 16th character checks the first 15 (odd positions through
    the decree's table, even ones by their value), mod 26."""
    code = compact(value).upper()
    if len(code) != 16 or not code.isascii() or not code.isalnum():
        return False
    total = 0
    for index, char in enumerate(code[:15]):
        if index % 2 == 0:  # 1st, 3rd, ... (odd, counted from 1)
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - ord("A")
    return chr(ord("A") + total % 26) == code[15]


def nl_bsn_valid(value: str) -> bool:
    """Dutch BSN: the "11-test", 9x the 1st digit + ... + 2x the 8th - the 9th, divisible by 11."""
    digits = compact(value)
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit() or digits == "0" * 9:
        return False
    total = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0


def br_cpf_valid(value: str) -> bool:
    """Brazilian CPF: 9 digits and two mod-11 check digits; eleven equal digits are refused."""
    digits = compact(value)
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit() or len(set(digits)) == 1:
        return False
    numbers = [int(d) for d in digits]
    for size in (9, 10):
        check = sum(n * (size + 1 - i) for i, n in enumerate(numbers[:size])) * 10 % 11 % 10
        if check != numbers[size]:
            return False
    return True


def jp_my_number_valid(value: str) -> bool:
    """Japanese My Number (個人番号): 11 digits and a mod-11 check digit, weights 2-7 then 2-6
    from the right."""
    digits = compact(value)
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        return False
    body = [int(d) for d in reversed(digits[:11])]
    remainder = sum(p * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(body, start=1)) % 11
    return (0 if remainder <= 1 else 11 - remainder) == int(digits[11])


def us_ssn_valid(value: str) -> bool:
    """An SSN that could be issued: area not 000, 666 or 9xx, group not 00, serial not 0000."""
    digits = compact(value)
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
