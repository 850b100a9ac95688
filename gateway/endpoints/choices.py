"""What chat and completions share: an answer made of ``choices``, each carrying its texts
(where, the endpoint's ``ChoiceFormat`` says), read whole (``ChoiceAnswer``) or as a
stream of chunks ending with ``[DONE]`` (``ChoiceStream``).

Each stream chunk's choice is one policy item with every text a client reads (content,
reasoning, tool-call arguments, logprobs); what the policy lets out is written back as
the upstream's own bytes where an event leaves whole and untouched, a re-encoded chunk
where it leaves in parts or masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.answer import Field, ProtocolViolation, choices_of, field_kind, usage_counts
from gateway.endpoints.base import NO_USAGE, Passing
from gateway.errors import GatewayError, error_event
from gateway.relay import RawStream
from gateway.sse import SSEEvent, encode_event
from gateway.stream_policy import Guard, Item, Out, Part, Stop
from monitors.base import Span
from monitors.redact import apply_redactions, marker
from monitors.verdicts import StageResult

DONE_EVENT = b"data: [DONE]\n\n"
# The raw relay: a complete stream ends with [DONE]; a fault, with chat's error event.
RAW_STREAM = RawStream((b"data: [DONE]",), lambda _last: error_event)


class ChoiceFormat:
    """Where a choice keeps its texts. A field is named by a path-like key (``content``,
    ``tool_calls.<i>.arguments``, ``text``, ``logprobs``: the chosen tokens joined); its
    *kind* (``gateway.answer.field_kind``) is what a monitor's ``fields`` option selects."""

    logprob_key: str  # the list of a choice's ``logprobs`` that holds the chosen tokens

    def texts(self, choice: dict, *, streamed: bool) -> list[Field]:
        """The choice's texts but its logprobs, in a fixed order; empty ones skipped."""
        raise NotImplementedError

    def set_field(self, choice: dict, key: str, text: str, *, streamed: bool) -> None:
        """Write ``text`` into the field ``key`` (the inverse of ``fields``; not logprobs)."""
        raise NotImplementedError

    def token(self, entry: Any) -> str:
        """The chosen token of one logprobs entry."""
        raise NotImplementedError

    def mask_entry(self, logprobs: dict, at: int, text: str) -> None:
        """Replace the token of entry ``at`` with ``text``; its alternatives go."""
        raise NotImplementedError

    def clear(self, choice: dict, refusal: str, *, streamed: bool) -> None:
        """Replace the texts of a blocked choice with the refusal message."""
        raise NotImplementedError

    def drop_once_fields(self, choice: dict) -> None:
        """A later part of one event must not repeat what a client reads once."""

    def blocked_choice(self, index: int) -> dict[str, Any]:
        """The choice of the chunk that ends a blocked stream."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def fields(self, choice: dict, *, streamed: bool) -> list[Field]:
        """Every text of a choice a client can read. Raises ProtocolViolation when a field
        has the wrong type."""
        fields = self.texts(choice, streamed=streamed)
        if choice.get("logprobs") is None:  # nearly every chunk: none were asked for
            return fields
        tokens = self.logprob_tokens(choice)
        if tokens:
            fields.append(("logprobs", "".join(tokens)))
        return fields

    def _entries(self, choice: dict) -> list | None:
        logprobs = choice.get("logprobs")
        if logprobs is None:
            return None
        if not isinstance(logprobs, dict):
            raise ProtocolViolation("choice.logprobs is not an object")
        entries = logprobs.get(self.logprob_key)
        if entries is None:
            return None
        if not isinstance(entries, list):
            raise ProtocolViolation("logprobs tokens are not a list")
        return entries

    def logprob_tokens(self, choice: dict) -> list[str]:
        """The chosen tokens of a choice's logprobs, in order (empty when none were asked)."""
        return [self.token(entry) for entry in self._entries(choice) or ()]

    def redact_logprobs(self, choice: dict, spans: list[Span]) -> None:
        """Mask the tokens a span covers (``spans`` index the joined tokens; in a stream a
        span may begin before this chunk's first token, at a negative offset): the token
        where a span begins becomes its marker, the others empty; their alternatives go."""
        entries = self._entries(choice)
        if not entries or not spans:
            return
        position = 0
        for at, token in enumerate(self.logprob_tokens(choice)):
            start, end = position, position + len(token)
            position = end
            hit = next((s for s in spans if s.start < end and start < s.end or s.start == start and not token), None)
            if hit is not None:
                self.mask_entry(choice["logprobs"], at, marker(hit.label) if start <= hit.start < end else "")


class ChoiceAnswer:
    """A whole completion: its choices' texts checked, rewritten in place."""

    def __init__(self, form: ChoiceFormat, body: bytes, *, texts: bool) -> None:
        self._format = form
        self._payload = orjson.loads(body)
        self._choices = choices_of(self._payload, streamed=False)
        self.usage = usage_counts(self._payload.get("usage"))
        self._fields = (
            [(choice, field) for choice in self._choices for field in form.fields(choice, streamed=False)]
            if texts
            else []
        )
        self.texts = [text for _, (_, text) in self._fields]
        self.kinds = [field_kind(key) for _, (key, _) in self._fields]

    def apply(self, result: StageResult, refusal: str) -> bytes | None:
        if result.blocked_by is not None:
            for choice in self._choices:
                self._format.clear(choice, refusal, streamed=False)
            return orjson.dumps(self._payload)
        changed = False
        for (choice, (key, text)), spans in zip(self._fields, result.redactions, strict=True):
            if not spans:
                continue
            changed = True
            if key == "logprobs":
                self._format.redact_logprobs(choice, spans)
            else:
                self._format.set_field(choice, key, apply_redactions(text, spans), streamed=False)
        return orjson.dumps(self._payload) if changed else None


class ChoiceStream:
    """The stream dialect of chat and completions chunks."""

    end = "[DONE]"
    event_noun = "a completion chunk"

    def __init__(
        self, form: ChoiceFormat, verdicts: Callable[[], dict[str, list[str]]], clock: Callable[[], float]
    ) -> None:
        self._format = form
        self._verdicts = verdicts
        self._clock = clock
        self._template: dict[str, Any] = {}  # the last chunk with choices: a block's chunk copies it

    def decode(self, event: SSEEvent) -> list[Item] | Passing:
        if event.is_done:
            return Passing(DONE_EVENT, None, last=True)
        chunk = orjson.loads(event.data)
        items = self._items(chunk, event.raw)
        if items:
            return items
        # Usage or error events: everything held before them leaves first.
        return Passing(event.raw, chunk, usage=chunk["usage"] if "usage" in chunk else NO_USAGE)

    def _items(self, chunk: Any, raw: bytes) -> list[Item]:
        choices = choices_of(chunk, streamed=True)
        if not choices:
            return []
        self._template = chunk
        now = self._clock()
        fields = self._format.fields
        # One choice (the usual chunk): the item is the event, bytes and all.
        only = len(choices) == 1
        items = []
        for choice in choices:
            items.append(
                Item(
                    choice.get("index", 0),
                    chunk if only else {**chunk, "choices": [choice]},
                    raw if only else None,
                    fields(choice, streamed=True),
                    choice.get("finish_reason") is not None,
                    now,
                )
            )
        return items

    async def settle(self, passing: Passing, guard: Guard) -> list[bytes] | Stop:
        return [passing.raw]

    def encode(self, out: Out) -> bytes:
        item = out.item
        chunk = self._part(item, out.part) if out.part is not None else None
        if item.finished and (verdicts := self._verdicts()):
            # The response headers left before the output was checked: the finishing
            # chunk carries the output annotate flags and redactions.
            chunk = chunk if chunk is not None else orjson.loads(orjson.dumps(item.chunk))
            chunk.update(verdicts)
        if chunk is None:
            return item.raw if item.raw is not None else encode_event(orjson.dumps(item.chunk))
        return encode_event(orjson.dumps(chunk))

    def _part(self, item: Item, part: Part) -> dict[str, Any]:
        chunk = orjson.loads(orjson.dumps(item.chunk))
        choice = chunk["choices"][0]
        for key, text in part.texts.items():
            self._format.set_field(choice, key, text, streamed=True)
        if part.logprobs:
            self._format.redact_logprobs(choice, part.logprobs)
        if not part.whole:
            choice["finish_reason"] = None
            if "logprobs" in choice:
                choice["logprobs"] = None  # they leave with the item's last part
        if part.repeat:
            self._format.drop_once_fields(choice)
        return chunk

    def block(self, stop: Stop) -> list[bytes]:
        """End the stream with finish_reason content_filter."""
        chunk = {key: self._template.get(key) for key in ("id", "object", "created", "model")}
        chunk["choices"] = [self._format.blocked_choice(stop.index)]
        chunk.update(self._verdicts())
        return [encode_event(orjson.dumps(chunk)), DONE_EVENT]

    def error(self, error: GatewayError) -> bytes:
        return error_event(error)


class ChoiceOutput:
    """The ``Output`` of an endpoint whose answer is a list of choices."""

    noun = "a completion"

    def __init__(self, form: ChoiceFormat) -> None:
        self.format = form

    def answer(self, body: bytes, *, texts: bool) -> ChoiceAnswer:
        return ChoiceAnswer(self.format, body, texts=texts)

    def stream(
        self, verdicts: Callable[[], dict[str, list[str]]], refusal: str, clock: Callable[[], float]
    ) -> ChoiceStream:
        return ChoiceStream(self.format, verdicts, clock)
