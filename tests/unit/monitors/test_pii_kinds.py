"""The PII kinds on generated data: Faker's values (and the published check-digit rules
where Faker has none) in Faker sentences of many shapes; benign text and numbers stay."""

from __future__ import annotations

import random

import pytest

from loadtest.datasets import load_dataset
from monitors.base import MonitorLoadError
from monitors.builtin import pii
from monitors.builtin.pii import checksums
from monitors.config import MonitorSpec
from tests.unit.monitors.numbers_in_text import numbers_in_text
from tests.unit.monitors.pii_text import KINDS, my_number, phones_in_text, pii_in_text, steuer_id


@pytest.fixture(scope="module")
def detector():
    return pii.PiiDetector()


def _covered(detector, value: str, text: str) -> bool:
    at = text.index(value)
    middle = at + len(value) // 2
    return any(span.start <= middle < span.end for span in detector.find(text))


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "PHONE"])
def test_every_kind_is_found_in_generated_text(detector, kind):
    found = [_covered(detector, value, text) for value, text in pii_in_text(kind, 150, seed=1)]
    assert all(found), [
        text for (value, text), ok in zip(pii_in_text(kind, 150, seed=1), found, strict=True) if not ok
    ][:3]


def test_each_kind_is_labelled_as_itself(detector):
    for kind in KINDS:
        value, text = next(pii_in_text(kind, 1, seed=2))
        labels = {span.label for span in detector.find(text)}
        assert kind in labels or kind == "PHONE", (kind, text, labels)


def test_phone_numbers_of_ten_locales(detector):
    # Faker writes some numbers libphonenumber calls invalid, and some as bare runs of ten
    # digits that are no more a phone than an order number (India's, Italy's mobiles):
    # those pass unless the sentence says "phone". The rest are found.
    rows = list(phones_in_text(1000, seed=3))
    found = sum(_covered(detector, number, text) for _locale, number, text in rows)
    assert found >= 0.85 * len(rows)


def test_the_kinds_option_selects(detector):
    value, text = next(pii_in_text("IT_FISCAL_CODE", 1, seed=4))
    assert detector.find(text)
    assert pii.PiiDetector(kinds=["EMAIL"]).find(text) == []
    with pytest.raises(MonitorLoadError, match="kinds.0: Input should be 'API_KEY'.* 'JP_MY_NUMBER'"):
        pii.create(MonitorSpec(name="pii", kinds=["NO_SUCH_KIND"]))


def test_benign_text_and_numbers_are_left_alone(detector):
    benign = [item.text for item in load_dataset(labels=["benign"])]
    assert [t for t in benign if detector.find(t)] == []
    numbers = [text for _n, text in numbers_in_text(5000, seed=5)]
    altered = [t for t in numbers if detector.find(t)]
    assert len(altered) <= 0.01 * len(numbers), altered[:5]


def test_weak_checks_need_words_that_name_the_number(detector):
    rng = random.Random(6)
    for _ in range(50):
        number = steuer_id(rng)
        assert detector.find(f"Order {number} shipped.") == []
        assert detector.find(f"Meine Steuer-ID: {number}.")[0].label == "DE_TAX_ID"
        japanese = my_number(rng)
        # (A number with a leading 0 may still read as a phone: only the My Number label needs the words.)
        assert all(s.label != "JP_MY_NUMBER" for s in detector.find(f"Invoice {japanese} paid."))
        # Named, it is masked (as a card instead when it also is one: the more specific kind wins).
        spans = detector.find(f"私のマイナンバーは{japanese}です。")
        assert [(s.start, s.end) for s in spans] == [(9, 21)] and spans[0].label in ("JP_MY_NUMBER", "CREDIT_CARD")


@pytest.mark.parametrize(
    "check, value",
    [
        (checksums.de_tax_id_valid, "86095742719"),
        (checksums.jp_my_number_valid, "123456789018"),
        (checksums.verhoeff_valid, "2363"),
        (checksums.nl_bsn_valid, "111222333"),
        (checksums.br_cpf_valid, "529.982.247-25"),
        (checksums.es_dni_valid, "12345678Z"),
        (checksums.es_dni_valid, "X1234567L"),
        (checksums.fr_nir_valid, "1 84 12 76 451 089 46"),
    ],
)
def test_published_examples_pass_and_a_changed_digit_fails(check, value):
    # Examples printed in the schemes' own documentation; any one digit changed must fail.
    assert check(value)
    for i, char in enumerate(value):
        if char.isdigit():
            other = str((int(char) + 1) % 10)
            assert not check(value[:i] + other + value[i + 1 :]), (value, i)


def test_fiscal_codes_and_cards_from_faker_pass_their_checks():
    from faker import Faker

    fake = Faker("it_IT")
    fake.seed_instance(7)
    for _ in range(200):
        code = fake.ssn()
        assert checksums.it_fiscal_code_valid(code)
        assert not checksums.it_fiscal_code_valid(code[:15] + chr((ord(code[15]) - 64) % 26 + 65))


def test_passwords_in_prose_need_a_value_that_looks_like_one(detector):
    for text in [
        "The password is incorrect.",
        "Your password was changed yesterday.",
        "Reset the password to continue.",
        "postgres://user:password@localhost/db",
        "Set DB_PASSWORD=${DB_PASSWORD} in the unit file.",
    ]:
        assert [s for s in detector.find(text) if s.label == "PASSWORD"] == [], text
