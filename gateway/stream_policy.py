"""Output monitors on a stream: when a check runs, what may leave, when the stream stops.

Two policies behind one protocol (``StreamPolicy``), both pure step logic: upstream
items in, items to send out, or a stop. Each is handed one ``Guard``: the monitor
pipeline's checks bound to the output stage and the request (the relay passes
``gateway.monitored_relay.OutputGuard``; tests pass a fake), which both checks text and
says how much of it must stay held.

- ``HoldBack`` releases a character as soon as every enforcing monitor has checked a
  text containing it and none can still change its verdict on it (``hold``). A check
  starts when a read brought new text; text arriving while it runs joins the next one,
  so at low load a check covers a token or two and under load windows grow by
  themselves (monitor calls per token fall).
- ``StreamFirst`` sends everything at once and checks behind, one check in flight per
  stream; a hit cuts the stream, and what left before it is counted as leaked.

An *item* is one upstream event's share of one choice (the endpoint's stream dialect
makes them, ``gateway.endpoints``). An item that leaves whole and untouched is sent as
the upstream's own bytes; one that leaves in parts, or with text masked, leaves as a
``Part`` (the texts to send per field), which the dialect writes into its wire format:
the policies know no wire format.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.answer import field_kind
from gateway.settings import StreamingSpec
from gateway.textstream import FieldText
from monitors.base import Span
from monitors.verdicts import StageResult


class Guard(Protocol):
    """The output checks of one request, bound to its stage."""

    @property
    def context_chars(self) -> int:
        """How far back a check's context must reach (``MonitorPipeline.context_chars``)."""

    @property
    def min_new_chars(self) -> int:
        """The fewest unreleased characters for which ``hold`` may release any
        (``StageHolds.min_new_chars``): fewer, and a field is not planned at all."""

    async def check(
        self, texts: Sequence[str], kinds: Sequence[str] | None = None, whole: Sequence[str] | None = None
    ) -> StageResult | None:
        """The stage's result on ``texts`` (``whole``: the longer texts they are prefixes
        of, for redaction; see MonitorPipeline.check), or None when a fail-closed monitor
        could not take the check (the stream must stop rather than leak)."""

    def hold(self, text: str, start: int, kind: str = "content") -> int:
        """Where in ``text`` (unreleased from ``start``) holding begins."""


@dataclass(slots=True)
class Item:
    index: int  # the choice
    chunk: dict[str, Any]  # the event, with only this choice
    raw: bytes | None  # the event as received, when it carried only this choice
    texts: list[tuple[str, str]]  # (field key, text) in ChoiceFormat.fields order
    finished: bool  # carries the choice's finish_reason
    arrived: float
    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    parted: bool = False  # a part of it left already

    @property
    def has_text(self) -> bool:
        return bool(self.texts)


@dataclass(slots=True)
class Part:
    """What of an item leaves now, when not its own bytes: per field key the text to send
    (masked), the spans masking its logprobs (its last part only), and whether it is the
    item's last part and whether an earlier part left already."""

    texts: dict[str, str]
    logprobs: list[Span] | None
    whole: bool
    repeat: bool


@dataclass(slots=True)
class Out:
    """Send ``part`` (re-encoded by the dialect), or the item's own bytes when ``part`` is None."""

    item: Item
    part: Part | None


@dataclass(slots=True)
class Stop:
    index: int  # the choice whose text was blocked
    leaked: int = 0  # items carrying flagged text that had left already
    reason: str = "blocked"  # or "hold_cap", "overloaded"


@dataclass(slots=True)
class Step:
    out: list[Out] = field(default_factory=list)
    stop: Stop | None = None
    # Hold-back releases of text: (seconds the oldest released item was held, characters).
    released: list[tuple[float, int]] = field(default_factory=list)


@dataclass(slots=True)
class StreamStats:
    checks: int = 0
    hold_cap_released: int = 0  # fields let out undecided at max_hold_chars


class StreamPolicy(Protocol):
    mode: str  # "holdback" or "stream_first", as metrics name it
    stats: StreamStats

    async def feed(self, items: list[Item]) -> Step:
        """The items of one upstream read."""

    async def drain(self) -> Step:
        """Everything still held leaves (checked): the upstream ended, or an event that
        does not go through the policy comes next."""

    async def close(self) -> None:
        """Stop any check still running."""


class _Fields:
    """The field texts of every choice of a stream, by (choice index, field key)."""

    def __init__(self, overlap: int, reach: int, min_new: int = 0) -> None:
        self.overlap = overlap
        self.reach = reach
        # Skipping a field with fewer unreleased characters than any hold can release
        # saves a window and a hold() per token (a stream's most frequent path).
        self.min_new = min_new
        self.by_key: dict[tuple[int, str], FieldText] = {}
        # Whether a field may have reached min_new since unchecked() last found none: only
        # arriving text makes one (checks and sends only shrink what is unreleased), so
        # the tokens in between skip the scan.
        self._maybe_ready = False

    def add(self, item: Item) -> None:
        for key, text in item.texts:
            stream = self.by_key.get((item.index, key))
            if stream is None:
                stream = self.by_key[(item.index, key)] = FieldText(self.overlap, self.reach)
            start, end = stream.add(text)
            item.ranges.append((key, start, end))
            item.sent[key] = start
            if end - stream.cleared >= self.min_new:
                self._maybe_ready = True

    def unchecked(self, final: set[int] | bool = False) -> list[tuple[tuple[int, str], FieldText]]:
        """Fields with text no check planned for yet, at least ``min_new`` characters of it
        unreleased; of the ``final`` choices (all when True), every field with text no check
        read (what was held is checked now)."""
        if not final and not self._maybe_ready:
            return []
        found = [
            (key, stream)
            for key, stream in self.by_key.items()
            if (stream.unchecked and stream.end - stream.cleared >= self.min_new)
            or (stream.checked < stream.end and (final is True or (final and key[0] in final)))
        ]
        if not final:
            self._maybe_ready = bool(found)
        return found


@dataclass(slots=True)
class _Plan:
    """What one check reads of one field: its window up to where holding begins."""

    key: tuple[int, str]
    stream: FieldText
    text: str
    start: int  # absolute offset of text[0]
    unreleased: int  # where in text the unreleased part begins
    window: str  # all the field's text from ``start``: ``text`` is a prefix of it

    @property
    def releases(self) -> bool:
        return len(self.text) > self.unreleased


def _plan(key: tuple[int, str], stream: FieldText, guard: Guard, *, final: bool) -> _Plan:
    window, start, unreleased = stream.window()
    upto = len(window) if final else guard.hold(window, unreleased, field_kind(key[1]))
    stream.looked = start + len(window)
    return _Plan(key, stream, window[:upto], start, unreleased, window)


class HoldBack:
    mode = "holdback"

    def __init__(
        self, guard: Guard, *, overlap: int, max_hold_chars: int, at_max_hold: str, clock: Callable[[], float]
    ) -> None:
        self._guard = guard
        # Below max_hold_chars: a field over the cap is always planned (and released).
        self._fields = _Fields(overlap, guard.context_chars, min(guard.min_new_chars, max_hold_chars))
        self._queues: dict[int, deque[Item]] = {}
        self._complete: set[int] = set()
        self._max_hold = max_hold_chars
        self._at_max_hold = at_max_hold
        self._clock = clock
        self.stats = StreamStats()

    async def feed(self, items: list[Item]) -> Step:
        """The items of one upstream read: one check over all new text, then release."""
        for item in items:
            self._fields.add(item)
            self._queues.setdefault(item.index, deque()).append(item)
            if item.finished:
                self._complete.add(item.index)
        stop = await self._check_new()
        step = Step(stop=stop)
        self._emit(step)
        return step

    async def drain(self) -> Step:
        """The upstream ended (or a usage event came): everything left is final."""
        self._complete.update(self._queues)
        return await self.feed([])

    async def close(self) -> None:
        return None

    async def _check_new(self) -> Stop | None:
        plans = []
        for (index, key), stream in self._fields.unchecked(self._complete):
            final = index in self._complete
            plan = _plan((index, key), stream, self._guard, final=final)
            held = len(plan.window) - len(plan.text)
            if not final and held > self._max_hold:
                if self._at_max_hold == "block":
                    return Stop(index, reason="hold_cap")
                # Let it out checked but undecided: check all of it, hold nothing.
                self.stats.hold_cap_released += 1
                plan = _plan((index, key), stream, self._guard, final=True)
            if plan.releases:
                plans.append(plan)
        if plans:
            self.stats.checks += 1
            result = await self._guard.check(
                [plan.text for plan in plans],
                [field_kind(plan.key[1]) for plan in plans],
                [plan.window for plan in plans],
            )
            if result is None:
                return Stop(plans[0].key[0], reason="overloaded")
            if result.blocked_by is not None:
                blocked = plans[result.blocked_by.text_index or 0]
                await self._clean_prefix(blocked)
                return Stop(blocked.key[0])
            for plan, spans in zip(plans, result.redactions, strict=True):
                plan.stream.accept(plan.start, plan.start + len(plan.text), spans)
        for (index, _key), stream in self._fields.by_key.items():
            if index in self._complete:
                stream.release_all()
        return None

    async def _clean_prefix(self, plan: _Plan) -> None:
        """A check blocked this field: let out the text before the word that tipped the
        verdict. Binary search over the word starts of the new text (for a verdict that
        more text can only make worse); costs checks only when a stream is blocked."""
        text, kind = plan.text, field_kind(plan.key[1])
        starts = [p for p in range(plan.unreleased + 1, len(text)) if text[p - 1].isspace() and not text[p].isspace()]
        low, high, passed = 0, len(starts), None
        while low < high:
            middle = (low + high) // 2
            self.stats.checks += 1
            result = await self._guard.check([text[: starts[middle]]], [kind], None)
            if result is not None and result.blocked_by is None:
                passed, low = (starts[middle], result), middle + 1
            else:
                high = middle
        if passed is not None:
            prefix, result = passed
            # What could still grow at the end of the prefix stays back, as always.
            upto = self._guard.hold(text[:prefix], plan.unreleased, kind)
            plan.stream.accept(
                plan.start, plan.start + upto, [span for span in result.redactions[0] if span.end <= upto]
            )

    def _emit(self, step: Step) -> None:
        out = step.out
        now = self._clock()
        for index, queue in self._queues.items():
            chars = 0
            oldest: float | None = None
            while queue:
                item = queue[0]
                streams = [(key, start, end, self._fields.by_key[(index, key)]) for key, start, end in item.ranges]
                whole = all(stream.cleared >= end for _, _, end, stream in streams)
                # A part of an event goes out only if it shows something: sending the space
                # before a held word on its own would double the events for nothing.
                if not whole and not any(
                    stream.piece(item.sent[key], min(end, stream.cleared)).strip()
                    for key, _, end, stream in streams
                    if stream.cleared > item.sent[key]
                ):
                    break
                before = sum(item.sent.values())
                untouched = (
                    whole
                    and not item.parted
                    and item.raw is not None
                    and not any(stream.touches_span(start, end) for _, start, end, stream in streams)
                )
                if untouched:
                    item.sent.update({key: end for key, _, end, _ in streams})
                    out.append(Out(item, None))
                else:
                    out.append(Out(item, self._part(item, streams, whole)))
                chars += sum(item.sent.values()) - before
                if item.has_text and oldest is None:
                    oldest = item.arrived
                if not whole:
                    break
                queue.popleft()
            if oldest is not None:
                step.released.append((now - oldest, chars))
            unsent: dict[str, int] = {}
            for item in queue:
                for key, _, _ in item.ranges:
                    unsent.setdefault(key, item.sent[key])
            for (choice, key), stream in self._fields.by_key.items():
                if choice == index:
                    stream.forget(unsent.get(key, stream.cleared))

    @staticmethod
    def _part(item: Item, streams, whole: bool) -> Part:
        """The item's texts from what was sent up to what may leave."""
        texts: dict[str, str] = {}
        logprobs: list[Span] | None = None
        for key, start, end, stream in streams:
            upto = end if whole else min(end, stream.cleared)
            if key == "logprobs":
                if whole:
                    logprobs = stream.spans_within(start, end)
            else:
                texts[key] = stream.piece(item.sent[key], upto)
            item.sent[key] = upto
        part = Part(texts, logprobs, whole, item.parted)
        item.parted = True
        return part


class StreamFirst:
    mode = "stream_first"

    def __init__(self, guard: Guard, *, overlap: int) -> None:
        self._guard = guard
        self._fields = _Fields(overlap, guard.context_chars, guard.min_new_chars)
        self._behind: asyncio.Task | None = None
        self._behind_plans: list[_Plan] = []
        self._behind_from = 0  # items sent when the text it checks began
        self._checked_upto = 0  # items sent when the last check was started
        self._sent_items = 0
        self.stats = StreamStats()

    async def feed(self, items: list[Item]) -> Step:
        step = Step()
        for item in items:
            # Most tokens arrive while a check is running behind, or with none: no await.
            collect = self._behind is not None and (item.finished or self._behind.done())
            stop = await self._collect(wait=item.finished) if collect else None
            if stop is None and item.finished:
                self._fields.add(item)
                stop = await self._final(unsent=1 if item.has_text else 0)
            if stop is not None:
                step.stop = stop
                return step
            if not item.finished:
                self._fields.add(item)
            self._sent(item)
            step.out.append(Out(item, None))
        if self._behind is None:
            self._start_behind(final=False)
        return step

    async def drain(self) -> Step:
        return Step(stop=await self._final())

    async def close(self) -> None:
        if self._behind is not None:
            self._behind.cancel()
            await asyncio.gather(self._behind, return_exceptions=True)
            self._behind = None

    def _sent(self, item: Item) -> None:
        if not item.texts:  # no ranges either
            return
        self._sent_items += 1
        by_key = self._fields.by_key
        for key, _start, end in item.ranges:
            by_key[(item.index, key)].forget(end)

    def _start_behind(self, *, final: bool) -> None:
        plans = [
            plan
            for key, stream in self._fields.unchecked(final)
            if (plan := _plan(key, stream, self._guard, final=final)).releases
        ]
        if not plans:
            return
        for plan in plans:
            plan.stream.accept(plan.start, plan.start + len(plan.text), [])
        self._behind_from, self._checked_upto = self._checked_upto, self._sent_items
        self.stats.checks += 1
        self._behind_plans = plans
        self._behind = asyncio.ensure_future(
            self._guard.check([plan.text for plan in plans], [field_kind(plan.key[1]) for plan in plans], None)
        )

    async def _collect(self, *, wait: bool) -> Stop | None:
        task = self._behind
        if task is None or (not wait and not task.done()):
            return None
        self._behind = None
        result = await task
        if result is None or result.blocked_by is not None:
            at = result.blocked_by.text_index or 0 if result is not None else 0
            return Stop(
                self._behind_plans[at].key[0],
                leaked=self._sent_items - self._behind_from,
                reason="blocked" if result is not None else "overloaded",
            )
        return None

    async def _final(self, unsent: int = 0) -> Stop | None:
        stop = await self._collect(wait=True)
        if stop is None:
            self._start_behind(final=True)
            stop = await self._collect(wait=True)
        if stop is not None:
            stop.leaked = max(0, stop.leaked - unsent)
        return stop


def stream_policy(
    guard: Guard, streaming: StreamingSpec, clock: Callable[[], float], *, enforcing: bool
) -> StreamPolicy:
    """The configured policy; shadow-only output monitors (not ``enforcing``) never hold
    text back: they only watch."""
    if enforcing and streaming.mode == "holdback":
        return HoldBack(
            guard,
            overlap=streaming.overlap_chars,
            max_hold_chars=streaming.max_hold_chars,
            at_max_hold=streaming.at_max_hold,
            clock=clock,
        )
    return StreamFirst(guard, overlap=streaming.overlap_chars)
