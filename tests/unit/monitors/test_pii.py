from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitors.base import MonitorLoadError
from monitors.builtin import pii
from monitors.config import MonitorSpec
from monitors.redact import apply_redactions


def found(text: str, kinds=pii.KINDS) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.label) for s in pii.PiiDetector(kinds).find(text)]


def luhn_check_digit(body: str) -> str:
    for digit in "0123456789":
        if pii.luhn_valid(body + digit):
            return digit
    raise AssertionError("unreachable")


def group(digits: str, separator: str) -> str:
    if not separator:
        return digits
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


cards = (
    st.integers(13, 19)
    .flatmap(lambda n: st.text("0123456789", min_size=n - 1, max_size=n - 1))
    .map(lambda body: body + luhn_check_digit(body))
)
separators = st.sampled_from(["", " ", "-"])


@given(cards, separators)
def test_luhn_valid_card_numbers_are_found_whole(number, separator):
    written = group(number, separator)
    assert found(f"pay with {written} today") == [(written, "CREDIT_CARD")]


@given(cards, separators, st.integers(1, 9))
def test_luhn_invalid_numbers_are_not_cards(number, separator, delta):
    wrong = number[:-1] + str((int(number[-1]) + delta) % 10)
    assert "CREDIT_CARD" not in {label for _, label in found(f"ref {group(wrong, separator)} ok")}


def test_known_test_cards():
    assert found("visa 4111 1111 1111 1111, amex 3782-822463-10005") == [
        ("4111 1111 1111 1111", "CREDIT_CARD"),
        ("3782-822463-10005", "CREDIT_CARD"),
    ]
    assert found("not a card: 4111 1111 1111 1112") == []


def make_iban(country: str, bban: str) -> str:
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


bbans = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=11, max_size=30)


@given(st.sampled_from(["DE", "GB", "FR", "NL", "ES"]), bbans)
def test_mod97_valid_ibans_are_found(country, bban):
    iban = make_iban(country, bban)
    assert pii.iban_valid(iban)
    assert found(f"send to {iban} please") == [(iban, "IBAN")]
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    assert found(f"send to {spaced} please") == [(spaced, "IBAN")]


@given(st.sampled_from(["DE", "GB"]), bbans, st.integers(0, 40), st.integers(1, 9))
def test_a_mistyped_iban_digit_is_rejected(country, bban, position, delta):
    iban = make_iban(country, bban)
    digits = [i for i, c in enumerate(iban) if c.isdigit()]
    index = digits[position % len(digits)]
    typo = iban[:index] + str((int(iban[index]) + delta) % 10) + iban[index + 1 :]
    assert not pii.iban_valid(typo)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail john.doe+tag@mail.example.co.uk.", [("john.doe+tag@mail.example.co.uk", "EMAIL")]),
        ("call (212) 555-1234", [("(212) 555-1234", "PHONE")]),
        ("call 212-555-1234 or 212.555.1234", [("212-555-1234", "PHONE"), ("212.555.1234", "PHONE")]),
        ("call +1 415-555-0100", [("+1 415-555-0100", "PHONE")]),
        ("ring +44 20 7946 0958", [("+44 20 7946 0958", "PHONE")]),
        ("ring +49 (0)30 1234567", [("+49 (0)30 1234567", "PHONE")]),
        ("ssn 123-45-6789", [("123-45-6789", "US_SSN")]),
        ("host 10.0.0.254", [("10.0.0.254", "IPV4")]),
        ("a version, not a host: v1.2.3.4, Version 10.0.0.1, revision 1.12.2.1, release 2.0.0.1", []),
        ("gateway at 192.168.1.1 since version 4", [("192.168.1.1", "IPV4")]),
        ("IBAN DE89 3704 0044 0532 0130 00", [("DE89 3704 0044 0532 0130 00", "IBAN")]),
        ("aws AKIAIOSFODNN7EXAMPLE", [("AKIAIOSFODNN7EXAMPLE", "API_KEY")]),
        ("gh ghp_" + "a1" * 18, [("ghp_" + "a1" * 18, "API_KEY")]),
        ("gh github_pat_" + "A" * 30, [("github_pat_" + "A" * 30, "API_KEY")]),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", [("sk-proj-abcdefghijklmnopqrstuvwxyz0123", "API_KEY")]),
        ("slack xoxb-1234567890-abcdef", [("xoxb-1234567890-abcdef", "API_KEY")]),
        ("g AIza" + "Q" * 35, [("AIza" + "Q" * 35, "API_KEY")]),
        ("password=hunter22; API_KEY: 'abcd1234'", [("hunter22", "API_KEY"), ("abcd1234", "API_KEY")]),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz.123", [("abcdefghijklmnopqrstuvwxyz.123", "API_KEY")]),
    ],
)
def test_each_kind(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 2125551234 shipped",  # bare 10 digits: an id, not a phone
        "ssn-like 000-12-3456 and 666-12-3456",  # never issued
        "version 1.2.3.4.5 and 256.1.1.1",
        "the password is secret",  # no assignment
        "max_tokens=1024",
        "call me at 555-1234",  # too short to be sure
        "price 1,299.00 for 3 items",
        "SECRET_KEY = 'your-secret-key'; api_key: <API_KEY>; password=xxxxxxxx; token=changeme",  # placeholders
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert found(text) == []


def test_private_key_block_is_masked_whole_even_without_its_end_line():
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{block}\nthanks") == [(block, "API_KEY")]
    partial = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk"
    assert found(f"key: {partial}") == [(partial, "API_KEY")]


def test_a_more_specific_kind_wins_an_overlap():
    # The value is also a valid card number; it is masked once, as the secret it is assigned to.
    assert found("password=4111111111111111") == [("4111111111111111", "API_KEY")]
    assert found("password=4111111111111111", kinds=["CREDIT_CARD"]) == [("4111111111111111", "CREDIT_CARD")]


def test_kinds_option_restricts_detection():
    monitor = pii.create(MonitorSpec(name="pii", kinds=["EMAIL"]))
    [finding] = monitor.check(["a@b.io 4111 1111 1111 1111"])
    assert finding.labels == {"EMAIL": 1.0}
    assert finding.score == 1.0


def test_bad_option_names_the_key():
    with pytest.raises(MonitorLoadError, match="kind"):
        pii.create(MonitorSpec(name="pii", kind=["EMAIL"]))
    with pytest.raises(MonitorLoadError, match="kinds"):
        pii.create(MonitorSpec(name="pii", kinds=["PASSPORT"]))


def test_monitor_findings_redact_cleanly():
    monitor = pii.create(MonitorSpec(name="pii"))
    text = "I am bob@corp.com, card 4111111111111111, call +44 20 7946 0958"
    clean, dirty = monitor.check(["nothing here", text])
    assert clean.score == 0.0 and clean.spans == ()
    assert dirty.labels == {"EMAIL": 1.0, "CREDIT_CARD": 1.0, "PHONE": 1.0}
    assert apply_redactions(text, dirty.spans) == (
        "I am [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD], call [REDACTED:PHONE]"
    )


def test_fast_on_long_adversarial_text():
    monitor = pii.create(MonitorSpec(name="pii"))
    texts = ["1" * 5000, "a" * 5000 + "@", "+1 " * 2000, "A1" * 3000, "-----BEGIN PRIVATE KEY-----" + "x" * 5000]
    started = time.perf_counter()
    monitor.check(texts)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "text, secret",
    [
        ("pwd=(555) 867-5309", "867"),
        ("password:(212) 555-0199 call me", "0199"),
    ],
)
def test_partly_overlapping_kinds_leak_nothing(text, secret):
    from monitors.builtin.pii import PiiDetector
    from monitors.redact import apply_redactions

    redacted = apply_redactions(text, PiiDetector().find(text))
    assert secret not in redacted


@pytest.mark.parametrize(
    "text, expected",
    [
        ("call 0412 345 678 tonight", "0412 345 678"),  # Australian mobile, national format
        ("Büro: (030) 12345678", "(030) 12345678"),  # German landline
        ("ring 020 7946 0018", "020 7946 0018"),  # London
        ("mobile 01812-345678", "01812-345678"),  # Bangladesh
    ],
)
def test_national_phone_numbers_validated_by_libphonenumber(text, expected):
    assert found(text) == [(expected, "PHONE")]


@pytest.mark.parametrize(
    "text",
    [
        "-- Larry Wall in <199710291922.LAA07101@wall.org>",  # a Message-ID, not a mailbox
        "Dennis Ritchie (1941-2011)",
        "pi is 3.14159 265",
        "id 12345678",
        "call 0412 345 678",  # valid in AU only
    ],
)
def test_not_phones_or_out_of_region(text):
    if text.startswith("call"):
        assert pii.PiiDetector(phone_regions=["US"]).find(text) == []
    else:
        assert found(text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Please contact Joe by phone at 22 12 34.", ["22 12 34"]),
        ("You can reach Terry Cooper at 5012 3456.", ["5012 3456"]),
        ("The phone number of Matthew Lynch is 40123.", ["40123"]),
        ("Tel. +690 7290", ["+690 7290"]),
        ("my phone has 1234 photos", []),  # too short even when introduced
        ("the phone was sold on 2024-05-17", []),  # a date, not a number
        ("we reach the summit. Its height is 88488 m", []),  # the cue is in another sentence
    ],
)
def test_a_number_introduced_as_a_phone_number_is_one(text, expected):
    assert [t for t, kind in found(text) if kind == "PHONE"] == expected
