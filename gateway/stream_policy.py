"""Output monitors on a stream: when a check runs, what may leave, when the stream stops.

Two policies behind one interface, both pure step logic with the check injected (the
relay passes the monitor pipeline; tests pass a fake): upstream items in, items to send
out, or a stop.

- ``HoldBack`` releases a character as soon as every enforcing monitor has checked a
  text containing it and none can still change its verdict on it (``hold``). A check
  starts when a read brought new text; text arriving while it runs joins the next one,
  so at low load a check covers a token or two and under load windows grow by
  themselves (monitor calls per token fall).
- ``StreamFirst`` sends everything at once and checks behind, one check in flight per
  stream; a hit cuts the stream, and what left before it is counted as leaked.

An *item* is one upstream event's share of one choice. An item that leaves whole and
untouched is sent as the upstream's own bytes; one that leaves in parts, or with text
masked, is re-encoded from its parsed chunk.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.answer import field_kind, redact_logprobs, set_field
from gateway.textstream import FieldText
from monitors.pipeline import StageResult

# texts, their field kinds, the longer texts they are prefixes of (for redaction; see
# MonitorPipeline.check) -> the stage's result, or None when a fail-closed monitor could
# not take the check (the stream must stop rather than leak).
Check = Callable[[list[str], list[str], list[str] | None], Awaitable[StageResult | None]]
# window text, where its unreleased part starts, field kind -> where holding begins.
Hold = Callable[[str, int, str], int]


@dataclass(slots=True)
class Item:
    index: int  # the choice
    chunk: dict[str, Any]  # the event, with only this choice
    raw: bytes | None  # the event as received, when it carried only this choice
    texts: list[tuple[str, str]]  # (field key, text) in choice_fields order
    finished: bool  # carries the choice's finish_reason
    arrived: float
    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    parted: bool = False  # a part of it left already

    @property
    def has_text(self) -> bool:
        return bool(self.texts)


@dataclass(slots=True)
class Out:
    """Send ``chunk`` (re-encoded), or the item's own bytes when ``chunk`` is None."""

    item: Item
    chunk: dict[str, Any] | None


@dataclass(slots=True)
class Stop:
    index: int  # the choice whose text was blocked
    leaked: int = 0  # items carrying flagged text that had left already
    reason: str = "blocked"  # or "hold_cap", "overloaded"


@dataclass(slots=True)
class Step:
    out: list[Out] = field(default_factory=list)
    stop: Stop | None = None


@dataclass(slots=True)
class StreamStats:
    checks: int = 0
    hold_cap_released: int = 0  # fields let out undecided at max_hold_chars


class _Fields:
    """The field texts of every choice of a stream, by (choice index, field key)."""

    def __init__(self, overlap: int, reach: int) -> None:
        self.overlap = overlap
        self.reach = reach
        self.by_key: dict[tuple[int, str], FieldText] = {}

    def add(self, item: Item) -> None:
        for key, text in item.texts:
            stream = self.by_key.get((item.index, key))
            if stream is None:
                stream = self.by_key[(item.index, key)] = FieldText(self.overlap, self.reach)
            start, end = stream.add(text)
            item.ranges.append((key, start, end))
            item.sent[key] = start

    def unchecked(self, final: set[int] | bool = False
                  ) -> list[tuple[tuple[int, str], FieldText]]:
        """Fields with text no check planned for yet; of the ``final`` choices (all when
        True), every field with text no check read (what was held is checked now)."""
        return [(key, stream) for key, stream in self.by_key.items()
                if stream.unchecked or (stream.checked < stream.end
                                        and (final is True or (final and key[0] in final)))]


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


def _plan(key: tuple[int, str], stream: FieldText, hold: Hold, *, final: bool) -> _Plan:
    window, start, unreleased = stream.window()
    upto = len(window) if final else hold(window, unreleased, field_kind(key[1]))
    stream.looked = start + len(window)
    return _Plan(key, stream, window[:upto], start, unreleased, window)


class HoldBack:
    def __init__(self, route: str, check: Check, hold: Hold, *, overlap: int,
                 max_hold_chars: int, at_max_hold: str, clock: Callable[[], float],
                 reach: int = 0,
                 on_release: Callable[[float, int], None] = lambda delay, chars: None) -> None:
        self._route = route
        self._check = check
        self._hold = hold
        self._fields = _Fields(overlap, reach)
        self._queues: dict[int, deque[Item]] = {}
        self._finished: set[int] = set()
        self._max_hold = max_hold_chars
        self._at_max_hold = at_max_hold
        self._clock = clock
        self._on_release = on_release
        self.stats = StreamStats()

    async def feed(self, items: list[Item]) -> Step:
        """The items of one upstream read: one check over all new text, then release."""
        for item in items:
            self._fields.add(item)
            self._queues.setdefault(item.index, deque()).append(item)
            if item.finished:
                self._finished.add(item.index)
        stop = await self._check_new()
        return Step(out=self._emit(), stop=stop)

    async def drain(self) -> Step:
        """The upstream ended (or a usage event came): everything left is final."""
        self._finished.update(self._queues)
        return await self.feed([])

    async def close(self) -> None:
        return None

    async def _check_new(self) -> Stop | None:
        plans = []
        for (index, key), stream in self._fields.unchecked(self._finished):
            final = index in self._finished
            plan = _plan((index, key), stream, self._hold, final=final)
            held = len(plan.window) - len(plan.text)
            if not final and held > self._max_hold:
                if self._at_max_hold == "block":
                    return Stop(index, reason="hold_cap")
                # Let it out checked but undecided: check all of it, hold nothing.
                self.stats.hold_cap_released += 1
                plan = _plan((index, key), stream, self._hold, final=True)
            if plan.releases:
                plans.append(plan)
        if plans:
            self.stats.checks += 1
            result = await self._check([plan.text for plan in plans],
                                       [field_kind(plan.key[1]) for plan in plans],
                                       [plan.window for plan in plans])
            if result is None:
                return Stop(plans[0].key[0], reason="overloaded")
            if result.blocked_by is not None:
                blocked = plans[result.blocked_by.text_index or 0]
                await self._clean_prefix(blocked)
                return Stop(blocked.key[0])
            for plan, spans in zip(plans, result.redactions, strict=True):
                plan.stream.accept(plan.start, plan.start + len(plan.text), spans)
        for (index, _key), stream in self._fields.by_key.items():
            if index in self._finished:
                stream.release_all()
        return None

    async def _clean_prefix(self, plan: _Plan) -> None:
        """A check blocked this field: let out the text before the word that tipped the
        verdict. Binary search over the word starts of the new text (for a verdict that
        more text can only make worse); costs checks only when a stream is blocked."""
        text, kind = plan.text, field_kind(plan.key[1])
        starts = [p for p in range(plan.unreleased + 1, len(text))
                  if text[p - 1].isspace() and not text[p].isspace()]
        low, high, passed = 0, len(starts), None
        while low < high:
            middle = (low + high) // 2
            self.stats.checks += 1
            result = await self._check([text[:starts[middle]]], [kind], None)
            if result is not None and result.blocked_by is None:
                passed, low = (starts[middle], result), middle + 1
            else:
                high = middle
        if passed is not None:
            prefix, result = passed
            # What could still grow at the end of the prefix stays back, as always.
            upto = self._hold(text[:prefix], plan.unreleased, kind)
            plan.stream.accept(plan.start, plan.start + upto,
                               [span for span in result.redactions[0] if span.end <= upto])

    def _emit(self) -> list[Out]:
        out: list[Out] = []
        now = self._clock()
        for index, queue in self._queues.items():
            chars = 0
            oldest: float | None = None
            while queue:
                item = queue[0]
                streams = [(key, start, end, self._fields.by_key[(index, key)])
                           for key, start, end in item.ranges]
                whole = all(stream.cleared >= end for _, _, end, stream in streams)
                # A part of an event goes out only if it shows something: sending the space
                # before a held word on its own would double the events for nothing.
                if not whole and not any(stream.piece(item.sent[key], min(end, stream.cleared)).strip()
                                         for key, _, end, stream in streams
                                         if stream.cleared > item.sent[key]):
                    break
                before = sum(item.sent.values())
                untouched = whole and not item.parted and item.raw is not None and not any(
                    stream.touches_span(start, end) for _, start, end, stream in streams)
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
                self._on_release(now - oldest, chars)
            unsent: dict[str, int] = {}
            for item in queue:
                for key, _, _ in item.ranges:
                    unsent.setdefault(key, item.sent[key])
            for (choice, key), stream in self._fields.by_key.items():
                if choice == index:
                    stream.forget(unsent.get(key, stream.cleared))
        return out

    def _part(self, item: Item, streams, whole: bool) -> dict[str, Any]:
        """The item's chunk carrying its text from what was sent up to what may leave."""
        chunk = orjson.loads(orjson.dumps(item.chunk))
        # A Responses stream's item is one delta event, not a choice of a chunk.
        choice = chunk if self._route == "responses" else chunk["choices"][0]
        for key, start, end, stream in streams:
            upto = end if whole else min(end, stream.cleared)
            if key == "logprobs":
                if whole:
                    redact_logprobs(self._route, choice, stream.spans_within(start, end))
            else:
                set_field(self._route, choice, key, stream.piece(item.sent[key], upto),
                          streamed=True)
            item.sent[key] = upto
        if not whole and self._route != "responses":
            choice["finish_reason"] = None
            if "logprobs" in choice:
                choice["logprobs"] = None  # they leave with the item's last part
        if item.parted:
            _drop_once_fields(self._route, choice)
        item.parted = True
        return chunk


def _drop_once_fields(route: str, choice: dict[str, Any]) -> None:
    """A later part of one event must not repeat what a client reads once (the role, a
    tool call's id and type)."""
    if route == "completions":
        return
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return
    delta.pop("role", None)
    for call in delta.get("tool_calls") or ():
        call.pop("id", None)
        call.pop("type", None)


class StreamFirst:
    def __init__(self, route: str, check: Check, hold: Hold, *, overlap: int,
                 reach: int = 0) -> None:
        self._route = route
        self._check = check
        self._hold = hold
        self._fields = _Fields(overlap, reach)
        self._behind: asyncio.Task | None = None
        self._behind_plans: list[_Plan] = []
        self._behind_from = 0  # items sent when the text it checks began
        self._checked_upto = 0  # items sent when the last check was started
        self._sent_items = 0
        self.stats = StreamStats()

    async def feed(self, items: list[Item]) -> Step:
        step = Step()
        for item in items:
            stop = await self._collect(wait=item.finished)
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
        if item.has_text:
            self._sent_items += 1
        for key, _start, end in item.ranges:
            self._fields.by_key[(item.index, key)].forget(end)

    def _start_behind(self, *, final: bool) -> None:
        plans = [plan for key, stream in self._fields.unchecked(final)
                 if (plan := _plan(key, stream, self._hold, final=final)).releases]
        if not plans:
            return
        for plan in plans:
            plan.stream.accept(plan.start, plan.start + len(plan.text), [])
        self._behind_from, self._checked_upto = self._checked_upto, self._sent_items
        self.stats.checks += 1
        self._behind_plans = plans
        self._behind = asyncio.ensure_future(self._check(
            [plan.text for plan in plans], [field_kind(plan.key[1]) for plan in plans], None))

    async def _collect(self, *, wait: bool) -> Stop | None:
        task = self._behind
        if task is None or (not wait and not task.done()):
            return None
        self._behind = None
        result = await task
        if result is None or result.blocked_by is not None:
            at = result.blocked_by.text_index or 0 if result is not None else 0
            return Stop(self._behind_plans[at].key[0],
                        leaked=self._sent_items - self._behind_from,
                        reason="blocked" if result is not None else "overloaded")
        return None

    async def _final(self, unsent: int = 0) -> Stop | None:
        stop = await self._collect(wait=True)
        if stop is None:
            self._start_behind(final=True)
            stop = await self._collect(wait=True)
        if stop is not None:
            stop.leaked = max(0, stop.leaked - unsent)
        return stop
