"""The monitor extension points: ``Monitor`` (sync) and ``AsyncMonitor`` (async).

A monitor scores a batch of texts. It does not decide what happens to a request:
the pipeline compares its scores with the configured threshold and applies the
configured action (block, redact, annotate, shadow).

Writing a monitor::

    from monitors import Finding, Monitor

    class ShoutingMonitor(Monitor):
        '''Flags texts written mostly in capitals.'''

        def check(self, texts):
            findings = []
            for text in texts:
                letters = [c for c in text if c.isalpha()]
                share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
                findings.append(Finding(score=share, labels={"shouting": share}))
            return findings

    def create(spec):          # spec is a monitors.MonitorSpec
        return ShoutingMonitor()

Register the factory under the entry-point group ``taxgate.monitors`` in your
package's ``pyproject.toml``::

    [project.entry-points."taxgate.monitors"]
    shouting = "my_package.shouting:create"

and name it in the gateway config: ``monitors: [{name: shouting, action: block}]``.

Pick the base class by how the check spends its time, as httpx has ``BaseTransport``
and ``AsyncBaseTransport``:

- ``Monitor``: ``def check``, CPU-bound. The pipeline runs it in a worker thread
  through a micro-batcher, so texts from concurrent requests arrive together in one
  call; or, when the instance says it is ``inline``, on the event loop (see there).
- ``AsyncMonitor``: ``async def check``, I/O-bound (an LLM judge behind an HTTP API).
  It is awaited on the event loop and does its own batching; its ``close`` is async.

The pipeline dispatches on the class. A ``Monitor`` subclass whose ``check`` or ``close``
is a coroutine function (or an ``AsyncMonitor`` whose are not) is refused when the class
is defined, since it would be called the wrong way: its import fails with a TypeError
that names the base class to derive from, and the registry reports it as a
MonitorLoadError.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitors.holds import word_hold

if TYPE_CHECKING:
    from monitors.metrics import MonitorMetrics


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``text[start:end]`` flagged as ``label`` (used by ``redact``)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A monitor's verdict on one text.

    ``score`` is in [0, 1] (the pipeline compares it with ``threshold``);
    ``labels`` holds per-label scores in [0, 1] (compared with ``label_thresholds``);
    ``spans`` marks the characters to mask when the action is ``redact``.
    """

    score: float
    labels: Mapping[str, float] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()


class _Hooks:
    """What the pipeline asks of every monitor, sync or async, besides ``check``."""

    def hold(self, text: str, start: int = 0) -> int:
        """Streaming: the index in ``text`` (the part of a streamed answer seen so far)
        from which the rest must stay held, because more text could still change this
        monitor's verdict on it; ``len(text)`` when nothing need be held. ``text[:start]``
        was released already (it is context): the answer is never below ``start``.

        The default, for classifiers, holds the trailing partial word: a word is judged
        once it is complete, with the text before it as context. Pattern monitors hold
        exactly a possible partial match (see ``monitors.holds.pattern_hold``). Holding
        less than a monitor needs lets text out before it is judged; holding more only
        adds latency. Per monitor, ``stream_hold: word | sentence | chars`` overrides it.
        """
        return max(start, word_hold(text))

    @property
    def context_chars(self) -> int:
        """Streaming: the longest sentence this monitor scores as one piece, so that a
        check's context reaching back that far begins at its sentence's start (sentences
        as ``monitors.sentences`` ends them) and the stream scores the sentences the
        whole answer has. 0 (the default): any context will do."""
        return 0

    @property
    def min_new_chars(self) -> int:
        """Streaming: the fewest new (unreleased) characters for which ``hold`` can let
        anything out: a monitor that judges words in groups (``word_group_hold``) returns
        its group size, so a stream does not ask ``hold`` after every token. It must never
        be more than that (text would wait longer than the monitor asks). 0: ask always."""
        return 0


def _require(cls: type, names: tuple[str, ...], want_async: bool, other: str) -> None:
    """Refuse, when the class is defined, a ``check``/``close`` of the wrong colour."""
    for name in names:
        method = cls.__dict__.get(name)
        if method is not None and inspect.iscoroutinefunction(method) != want_async:
            kind = "a plain def" if want_async else "async"
            raise TypeError(
                f"{cls.__qualname__}.{name} is {kind}: derive from monitors.{other} "
                f"for {'a sync' if want_async else 'an async'} {name}"
            )


class Monitor(_Hooks, ABC):
    """A monitor whose ``check`` is a plain function (CPU-bound); see the module doc.

    ``inline`` (a property, False here) says that this instance's ``check`` is cheap
    enough to call on the event loop (regexes over a few hundred characters:
    microseconds), skipping the micro-batcher, whose thread hop and batching wait would
    cost more than the check. Override the property to say so; it is read once, when
    the pipeline starts, so an instance decides it from how it was built (as
    ``BlocklistMonitor`` does: its keywords are safe inline, a user's regex is not).
    Past ``inline_max_chars`` of text in one call an inline check runs in a worker
    thread instead, where ``timeout_ms`` can bound it (nothing interrupts a call on the
    event loop).
    """

    inline_max_chars: int = 16_384

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _require(cls, ("check", "close"), False, "AsyncMonitor")
        if "inline" in cls.__dict__ and not isinstance(cls.__dict__["inline"], property):
            raise TypeError(
                f"{cls.__qualname__}.inline must be a property (@property def inline(self) -> bool), not an attribute"
            )

    @property
    def inline(self) -> bool:
        """Whether ``check`` runs on the event loop (see the class doc)."""
        return False

    @abstractmethod
    def check(self, texts: Sequence[str]) -> list[Finding]:
        """Return one Finding per text, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook, most monitors hold nothing
        """Release resources (models, files). Called once at shutdown."""


class AsyncMonitor(_Hooks, ABC):
    """A monitor whose ``check`` is a coroutine (I/O-bound); see the module doc."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _require(cls, ("check", "close", "start"), True, "Monitor")

    async def start(self, metrics: MonitorMetrics) -> None:  # noqa: B027 - optional hook
        """Awaited once before the first check, with the pipeline's metrics: a monitor that
        batches texts of concurrent checks into one call records its batch sizes there
        (``taxgate_monitor_batch_size``), as the micro-batcher does for sync monitors."""

    @abstractmethod
    async def check(self, texts: Sequence[str]) -> list[Finding]:
        """Return one Finding per text, in order."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most monitors hold nothing
        """Release resources (HTTP clients). Awaited once at shutdown."""


class MonitorLoadError(RuntimeError):
    """A monitor could not be built (missing weights, bad options). The message says what to do."""


class MonitorOverloaded(RuntimeError):
    """A monitor's queue is full: the caller should retry after ``retry_after_s`` seconds.

    Raised by the micro-batcher, and by the pipeline when the monitor fails closed,
    so the gateway can answer 503 with a ``Retry-After`` header.
    """

    def __init__(self, monitor_id: str, retry_after_s: float) -> None:
        super().__init__(f"monitor {monitor_id!r} is overloaded; retry after {retry_after_s:.2f}s")
        self.monitor_id = monitor_id
        self.retry_after_s = retry_after_s
