"""Labelled prompt datasets: JSONL lines of ``{"text": ..., "label": ...}``.

The bundled files live in ``loadtest/data/``; users can pass their own file or
folder in the same format. Labels are free strings; the bundled ones are
``benign``, ``toxic``, ``pii`` and ``jailbreak``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

DATA_DIR = Path(__file__).parent / "data"
LABELS = ("benign", "toxic", "pii", "jailbreak")
# Labels whose items a safety monitor should catch; benign items it should let through.
HARMFUL_LABELS = ("toxic", "pii", "jailbreak")


class DatasetError(ValueError):
    """A dataset file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    text: str
    label: str

    @property
    def harmful(self) -> bool:
        return self.label in HARMFUL_LABELS


def load_dataset(path: Path | None = None, labels: Iterable[str] | None = None) -> list[Item]:
    """Read a JSONL file, or every ``*.jsonl`` in a folder (sorted by name).

    ``path`` defaults to the bundled datasets. ``labels`` keeps only those labels.
    """
    path = DATA_DIR if path is None else Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DatasetError(f"{path}: no *.jsonl files")
    elif path.is_file():
        files = [path]
    else:
        raise DatasetError(f"{path}: no such file or directory")
    items = [item for file in files for item in _read_file(file)]
    if labels is not None:
        wanted = set(labels)
        items = [item for item in items if item.label in wanted]
    return items


def _read_file(path: Path) -> list[Item]:
    items = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            items.append(_parse_line(line, f"{path}:{number}"))
    return items


def _parse_line(line: bytes, where: str) -> Item:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    text, label = data.get("text"), data.get("label")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: 'text' must be a non-empty string")
    if not isinstance(label, str) or not label:
        raise DatasetError(f"{where}: 'label' must be a non-empty string")
    return Item(text, label)
