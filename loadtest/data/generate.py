"""Writes the bundled labelled datasets (benign, toxic, pii, jailbreak) as JSONL.

Run from the repository root: ``python loadtest/data/generate.py``; ``--check`` writes
nothing and exits 1, naming the file, when a committed file is not what it would write.
The texts, templates and PII vocabulary are data, in ``templates.yaml`` beside this
script; this file only fills them in.

Output is deterministic: each label draws from its own random source, seeded from
``SEED`` and the label's name, so editing one label's templates rewrites that label's
file and leaves the others byte for byte as they were. PII values (card numbers,
IBANs, keys, ...) are valid where a detector would check (Luhn, IBAN mod-97) while
belonging to nobody: test card prefixes, documentation IP ranges, 555-01xx phone
numbers, example.* mail domains.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

SEED = 20240611
HERE = Path(__file__).parent
TEMPLATES = HERE / "templates.yaml"
LABELS = ("benign", "toxic", "pii", "jailbreak")
NEWLINE = b"\n"


class GenerateError(ValueError):
    """The templates cannot yield a valid dataset; the message names the label."""


def label_rng(label: str, seed: int = SEED) -> random.Random:
    # A string seed is hashed with SHA-512 by random.seed, so it is stable across runs
    # and Python versions (unlike hash()).
    return random.Random(f"{seed}:{label}")


def load_templates(path: Path = TEMPLATES) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [label for label in LABELS if label not in data]
    if missing:
        raise GenerateError(f"{path.name}: no entry for {', '.join(missing)}")
    return data


# --------------------------------------------------------------------------- PII values


def luhn_check_digit(payload: str) -> str:
    total = 0
    # Double every second digit from the right of the full number (check digit included).
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def card_number(rng: random.Random, prefixes: list[Mapping[str, Any]]) -> str:
    card = rng.choice(prefixes)
    payload = card["prefix"] + digits(rng, card["length"] - len(card["prefix"]) - 1)
    return payload + luhn_check_digit(payload)


def spaced(value: str, group: int = 4) -> str:
    return " ".join(value[i : i + group] for i in range(0, len(value), group))


def iban(rng: random.Random, formats: list[Mapping[str, Any]]) -> str:
    form = rng.choice(formats)
    letters = form["bank_letters"]
    bban = alnum(rng, letters, string.ascii_uppercase) + digits(rng, form["length"] - letters)
    # ISO 13616: move country + "00" to the end, letters to numbers, 98 - (n mod 97).
    rearranged = bban + form["country"] + "00"
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return f"{form['country']}{98 - int(numeric) % 97:02d}{bban}"


def ssn(rng: random.Random) -> str:
    # Area numbers 000, 666 and 900+ are never issued; stay in the valid-looking range.
    return f"{rng.randrange(100, 666):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def phone(rng: random.Random, areas: list[str]) -> str:
    style = rng.randrange(3)
    line = f"01{rng.randint(0, 99):02d}"
    area = rng.choice(areas)
    if style == 0:
        return f"+1 ({area}) 555-{line}"
    if style == 1:
        return f"{area}-555-{line}"
    return f"+44 20 7946 0{rng.randint(0, 999):03d}"  # Ofcom's drama range


def ascii_lower(name: str) -> str:
    # Mail local parts in the wild are mostly ASCII: "Tomás" becomes "tomas".
    decomposed = unicodedata.normalize("NFKD", name)
    return decomposed.encode("ascii", "ignore").decode().lower()


def pii_values(rng: random.Random, vocab: Mapping[str, Any]) -> dict[str, str]:
    first, last = rng.choice(vocab["first_names"]), rng.choice(vocab["last_names"])
    domains, ips = vocab["mail_domains"], vocab["ip_prefixes"]
    card = card_number(rng, vocab["card_prefixes"])
    account = iban(rng, vocab["iban_formats"])
    return {
        "name": f"{first} {last}",
        "email": f"{ascii_lower(first)}.{ascii_lower(last)}{rng.randint(1, 99)}@{rng.choice(domains)}",
        "email2": f"billing{rng.randint(1, 999)}@{rng.choice(domains)}",
        "phone": phone(rng, vocab["phone_areas"]),
        "card": card,
        "card_spaced": spaced(card),
        "ssn": ssn(rng),
        "iban": account,
        "iban_spaced": spaced(account),
        "ip": rng.choice(ips) + str(rng.randint(2, 254)),
        "ip2": rng.choice(ips) + str(rng.randint(2, 254)),
        "aws_key": "AKIA" + alnum(rng, 16, string.ascii_uppercase + string.digits),
        "github_token": "ghp_" + alnum(rng, 36),
        "openai_key": rng.choice(["sk-", "sk-proj-"]) + alnum(rng, 48),
    }


# --------------------------------------------------------------------------- assembly


def expand(
    label: str, templates: Mapping[str, Mapping[str, list[str]]], rng: random.Random, count: int, exclude: set[str]
) -> list[str]:
    """``count`` distinct fillings of the templates not in ``exclude``, drawn at random."""
    found: dict[str, None] = {}
    items = list(templates.items())
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > max(count, 1) * 200:
            raise GenerateError(f"{label}: templates cannot yield {count} more distinct texts")
        template, slots = rng.choice(items)
        text = template.format(**{name: rng.choice(values) for name, values in slots.items()})
        if text not in exclude:
            found[text] = None
    return list(found)


def build_label(label: str, entry: Mapping[str, Any], seed: int = SEED) -> list[str]:
    """One label's texts: its hand-written ones first, then template fillings."""
    rng = label_rng(label, seed)
    target = entry["target"]
    if label == "pii":
        found: dict[str, None] = {}
        attempts = 0
        while len(found) < target:
            attempts += 1
            if attempts > target * 200:
                raise GenerateError(f"pii: templates cannot yield {target} distinct texts")
            found[rng.choice(entry["templates"]).format(**pii_values(rng, entry["vocab"]))] = None
        return list(found)
    texts = list(dict.fromkeys(entry.get("handwritten", [])))[:target]
    return texts + expand(label, entry["templates"], rng, target - len(texts), set(texts))


def build(data: Mapping[str, Any], seed: int = SEED) -> dict[str, list[str]]:
    """Every label's texts; GenerateError when a label falls short of its minimum or two
    labels share a text."""
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for label in LABELS:
        texts = build_label(label, data[label], seed)
        if len(texts) < data[label]["minimum"]:
            raise GenerateError(f"{label}: only {len(texts)} texts, need {data[label]['minimum']}")
        shared = sorted(text for text in texts if text in owner)
        if shared:
            raise GenerateError(f"{label}: texts also under {owner[shared[0]]}: {shared[:3]}")
        owner.update(dict.fromkeys(texts, label))
        out[label] = texts
    return out


def render(texts: Mapping[str, list[str]]) -> dict[str, bytes]:
    """File name -> the JSONL bytes it holds."""
    return {
        f"{label}.jsonl": b"".join(orjson.dumps({"text": text, "label": label}) + b"\n" for text in items)
        for label, items in texts.items()
    }


def stale(files: Mapping[str, bytes], out_dir: Path) -> list[str]:
    """The names of the files in ``out_dir`` that differ from ``files`` (or are missing)."""
    return [
        name
        for name, content in files.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != content
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when a committed file differs")
    parser.add_argument("--templates", type=Path, default=TEMPLATES, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=HERE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        files = render(build(load_templates(args.templates)))
    except GenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        names = stale(files, args.out_dir)
        for name in names:
            print(f"{args.out_dir / name} is stale: run python loadtest/data/generate.py", file=sys.stderr)
        return 1 if names else 0
    for name, content in files.items():
        (args.out_dir / name).write_bytes(content)
        print(f"{name}: {content.count(NEWLINE)} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
