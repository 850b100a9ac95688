"""One measured request as a JSON line: the locustfile writes them, the runner reads them.

The line format is the contract between the two processes (and between Locust
workers and whoever analyses their files), so it lives in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from loadtest.bench.streamtiming import StreamResult


@dataclass(frozen=True, slots=True)
class Sample:
    """A request: when it was sent (epoch seconds) and what it measured (seconds)."""

    start: float
    status: int
    ttft_s: float | None
    e2e_s: float | None
    itls_s: tuple[float, ...]
    output_tokens: int
    error: str | None = None
    blocked: bool = False
    user: int = -1  # the Locust user that sent it (-1: unknown); throughput uses its cycles

    @property
    def ok(self) -> bool:
        """Completed with generated text: the requests latency statistics are taken over."""
        return self.error is None and not self.blocked and self.ttft_s is not None

    @property
    def end(self) -> float:
        return self.start + (self.e2e_s or 0.0)

    def to_line(self) -> bytes:
        # Microsecond resolution is plenty and keeps a 64-token line near 1 KB.
        return (
            orjson.dumps(
                {
                    "start": round(self.start, 6),
                    "status": self.status,
                    "ttft_s": _round(self.ttft_s),
                    "e2e_s": _round(self.e2e_s),
                    "itls_s": [round(v, 6) for v in self.itls_s],
                    "output_tokens": self.output_tokens,
                    "error": self.error,
                    "blocked": self.blocked,
                    "user": self.user,
                }
            )
            + b"\n"
        )

    @classmethod
    def from_dict(cls, data: dict) -> Sample:
        return cls(
            start=float(data["start"]),
            status=int(data["status"]),
            ttft_s=data.get("ttft_s"),
            e2e_s=data.get("e2e_s"),
            itls_s=tuple(data.get("itls_s") or ()),
            output_tokens=int(data.get("output_tokens") or 0),
            error=data.get("error"),
            blocked=bool(data.get("blocked", False)),
            user=int(data.get("user", -1)),
        )

    @classmethod
    def from_stream(cls, start: float, status: int, result: StreamResult, user: int = -1) -> Sample:
        return cls(
            start=start,
            status=status,
            ttft_s=result.ttft_s,
            e2e_s=result.e2e_s,
            itls_s=tuple(result.itls_s),
            output_tokens=result.output_tokens,
            error=result.error,
            blocked=result.blocked,
            user=user,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class SampleWriter:
    """Appends sample lines with one ``write(2)`` each on an ``O_APPEND`` descriptor.

    Several Locust workers on one host may share a file: single appends of a
    whole line do not interleave on a local file system, buffered writes could.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, sample: Sample) -> None:
        os.write(self._fd, sample.to_line())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_samples(path: str | os.PathLike) -> list[Sample]:
    """All samples in a file; a missing file is no samples (the round sent nothing).

    A last line cut short (a writer killed mid-write) is skipped; any other bad line
    is an error, since it means the file is not what the locustfile writes.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            samples.append(Sample.from_dict(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a sample line ({exc})") from exc
    return samples
