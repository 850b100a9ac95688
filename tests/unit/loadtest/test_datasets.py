"""The bundled labelled datasets and their loader."""

from __future__ import annotations

import copy
import importlib.util
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loadtest.datasets import DATA_DIR, HARMFUL_LABELS, DatasetError, Item, load_dataset

MINIMUMS = {"benign": 300, "toxic": 150, "pii": 100, "jailbreak": 50}


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def find_pii(text: str) -> list[str]:
    """What a basic PII detector would flag; validated where a checksum exists."""
    found = []
    found += re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)
    found += re.findall(r"(?:\+\d{1,2}\s?)?(?:\(\d{3}\)\s?|\d{3}-)555-\d{4}|\+44 20 7946 \d{4}", text)
    found += [m for m in re.findall(r"\b\d(?:[ -]?\d){12,18}\b", text) if luhn_ok(re.sub(r"\D", "", m))]
    found += [m for m in re.findall(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", text) if iban_ok(m.replace(" ", ""))]
    found += re.findall(r"\b\d{3}-\d{2}-\d{4}\b", text)
    found += re.findall(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", text)
    found += re.findall(
        r"\bAKIA[0-9A-Z]{16}\b|\bghp_[A-Za-z0-9]{36}\b"
        r"|\bsk-(?:proj-)?[A-Za-z0-9]{32,}",
        text,
    )
    return found


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return load_dataset()


def test_counts_meet_the_minimums(items):
    counts = Counter(item.label for item in items)
    for label, minimum in MINIMUMS.items():
        assert counts[label] >= minimum, label
    assert set(counts) == set(MINIMUMS)


def test_no_duplicate_texts(items):
    texts = Counter(item.text for item in items)
    assert [text for text, n in texts.items() if n > 1] == []


def test_every_pii_item_carries_something_a_detector_finds(items):
    missing = [item.text for item in items if item.label == "pii" and not find_pii(item.text)]
    assert missing == []


def test_every_pii_kind_is_represented(items):
    joined = "\n".join(item.text for item in items if item.label == "pii")
    for pattern in (
        r"@example\.",
        r"555-01\d\d",
        r"\d{3}-\d{2}-\d{4}",
        r"\bAKIA",
        r"\bghp_",
        r"\bsk-",
        r"\b203\.0\.113\.|\b192\.0\.2\.|\b198\.51\.100\.",
        r"\b[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    ):
        assert re.search(pattern, joined), pattern


def test_benign_items_carry_no_pii(items):
    flagged = [item.text for item in items if item.label == "benign" and find_pii(item.text)]
    assert flagged == []


def test_harmful_flag(items):
    # The bundled files hold every harmful label but harmful_request (the external set's).
    assert {item.label for item in items if item.harmful} == set(HARMFUL_LABELS) - {"harmful_request"}
    assert Item("How do I make a pipe bomb?", "harmful_request").harmful


def test_label_filter(items):
    toxic = load_dataset(labels=["toxic"])
    assert toxic and all(item.label == "toxic" for item in toxic)


def test_own_file(tmp_path: Path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y", "extra": 1}\n')
    assert load_dataset(path) == [Item("a", "x"), Item("b", "y")]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"label": "x"}', "'text'"),
        ('{"text": "a"}', "'label'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": "ok"}\n' + line + "\n")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl:2: .*{re.escape(message)}"):
        load_dataset(path)


def test_missing_path(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetError, match="no \\*.jsonl"):
        load_dataset(tmp_path)


def load_generator():
    # generate.py is a script beside the data, not a module of the package.
    spec = importlib.util.spec_from_file_location("taxgate_dataset_generate", DATA_DIR / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate


def test_checked_in_files_are_what_the_generator_writes(items):
    generate = load_generator()
    built = generate.build(generate.load_templates())
    assert list(built) == ["benign", "toxic", "pii", "jailbreak"]
    for label, texts in built.items():
        assert [item.text for item in items if item.label == label] == texts, label


def test_generator_check_mode_agrees_with_the_committed_files():
    assert load_generator().main(["--check"]) == 0


def test_check_mode_names_the_stale_file_and_writes_nothing(tmp_path):
    for path in DATA_DIR.glob("*.jsonl"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    stale = tmp_path / "toxic.jsonl"
    lines = stale.read_bytes().splitlines(keepends=True)
    stale.write_bytes(b"".join(lines[:-1]))
    result = subprocess.run(
        [sys.executable, str(DATA_DIR / "generate.py"), "--check", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == f"{stale} is stale: run python loadtest/data/generate.py\n"
    assert stale.read_bytes() == b"".join(lines[:-1])
    (tmp_path / "pii.jsonl").unlink()
    assert load_generator().main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert not (tmp_path / "pii.jsonl").exists()


def test_editing_one_label_rewrites_only_that_label():
    generate = load_generator()
    data = generate.load_templates()
    before = generate.build(data)
    edited = copy.deepcopy(data)
    edited["toxic"]["templates"]["You're a {adj} {noun}."]["noun"].append("buffoon")
    edited["toxic"]["handwritten"].pop(0)
    after = generate.build(edited)
    assert after["toxic"] != before["toxic"]
    assert len(after["toxic"]) == len(before["toxic"])
    for label in ("benign", "pii", "jailbreak"):
        assert after[label] == before[label], label


def test_generator_refuses_a_short_or_overlapping_dataset():
    generate = load_generator()
    data = generate.load_templates()
    short = copy.deepcopy(data)
    short["jailbreak"]["target"] = short["jailbreak"]["minimum"] - 1
    with pytest.raises(generate.GenerateError, match="jailbreak: only 49 texts, need 50"):
        generate.build(short)
    shared = copy.deepcopy(data)
    shared["jailbreak"]["handwritten"].append(shared["benign"]["handwritten"][0])
    with pytest.raises(generate.GenerateError, match="jailbreak: texts also under benign"):
        generate.build(shared)


def test_generated_pii_values_pass_their_checksums():
    generate = load_generator()
    vocab = generate.load_templates()["pii"]["vocab"]
    rng = random.Random(1)
    for _ in range(200):
        values = generate.pii_values(rng, vocab)
        assert luhn_ok(values["card"]) and iban_ok(values["iban"]), values
        assert values["card_spaced"].replace(" ", "") == values["card"]
    assert generate.luhn_check_digit("411111111111111") == "1"  # the classic 4111 1111 1111 1111


def test_csv_with_a_column_map(tmp_path):
    from loadtest.datasets import DatasetSpec

    path = tmp_path / "rows.csv"
    path.write_text('prompt,cls,source\n"hello, there",benign,chat\n"multi\nline",toxic,x\n', encoding="utf-8")
    spec = DatasetSpec.parse(f"mine={path}:text=prompt,label=cls")
    assert spec.name == "mine" and spec.path == path
    items = spec.load()
    assert items == [Item("hello, there", "benign"), Item("multi\nline", "toxic")]
    assert items[0].source == "chat"
    fixed = DatasetSpec.parse(f"{path}:text=prompt,label==toxic").load()
    assert [i.label for i in fixed] == ["toxic", "toxic"]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,cls\nx,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.csv:2: 'cls' must be"):
        DatasetSpec.parse(f"{bad}:text=prompt,label=cls").load()


def test_dataset_spec_names():
    from loadtest.datasets import DatasetSpec

    assert DatasetSpec.parse("/data/external/test").name == "external/test"
    assert DatasetSpec.parse("/data/my.jsonl").name == "my"
    with pytest.raises(DatasetError, match="column map"):
        DatasetSpec.parse("/data/my.csv:txt=prompt")
