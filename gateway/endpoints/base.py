"""What an API endpoint is to the gateway: one value (``Endpoint``) holding its path, its
request model, how its input texts are read, how its answer is read and rewritten
(``Output``: the whole-answer check and the stream dialect), and its raw stream's end
markers. The proxy looks an endpoint up once and asks it; nothing else branches on
which API a request is for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from gateway.errors import GatewayError
from gateway.input_text import InputView
from gateway.relay import RawStream
from gateway.sse import SSEEvent
from gateway.stream_policy import Guard, Item, Out, Stop
from monitors.verdicts import StageResult

NO_USAGE: Any = object()  # a passing event that reports no usage


@dataclass(slots=True)
class Passing:
    """A stream event that is not the policy's (usage, a whole text, the end): everything
    held before it leaves first, then it does (``StreamDialect.settle``)."""

    raw: bytes
    data: Any  # the dialect's own reading of the event
    usage: Any = NO_USAGE  # the ``usage`` it reports
    last: bool = False  # nothing follows it: the stream is complete


class StreamDialect(Protocol):
    """One stream's wire format when output monitors apply: upstream events to policy
    items and back. Stateful (one per stream)."""

    end: str  # the marker of a complete stream, named when the upstream ends without it
    event_noun: str  # what every event must be, named when one is not

    def decode(self, event: SSEEvent) -> list[Item] | Passing:
        """An event's items, or the event as a Passing one. Raises ProtocolViolation or
        orjson.JSONDecodeError for an event that is not the protocol."""

    async def settle(self, passing: Passing, guard: Guard) -> list[bytes] | Stop:
        """What a passing event becomes once everything before it left (a text no delta
        carried is checked here: a Stop when it is blocked)."""

    def encode(self, out: Out) -> bytes:
        """An item (or its part) as it leaves."""

    def block(self, stop: Stop) -> list[bytes]:
        """The events that end a blocked stream."""

    def error(self, error: GatewayError) -> bytes:
        """The event that ends a stream with ``error``."""


class Answer(Protocol):
    """A whole (non-streamed) answer, read: its token counts and the texts monitors check."""

    usage: tuple[int, int] | None
    texts: list[str]
    kinds: list[str]

    def apply(self, result: StageResult, refusal: str) -> bytes | None:
        """The body rewritten after the output check (blocked: the refusal; redacted:
        masked in place); None when it stays as received."""


class Output(Protocol):
    """How an endpoint's answer is read and rewritten."""

    noun: str  # what a whole answer must be, named when it is not

    def answer(self, body: bytes, *, texts: bool) -> Answer:
        """Read a whole answer (``texts``: with the texts output monitors check).
        Raises ProtocolViolation or orjson.JSONDecodeError."""

    def stream(
        self, verdicts: Callable[[], dict[str, list[str]]], refusal: str, clock: Callable[[], float]
    ) -> StreamDialect:
        """A stream's dialect; ``verdicts`` gives the request's annotate flags and redactions
        as final-event fields (``RequestContext.verdict_fields``, read when the stream ends)."""


InputReader = Callable[..., InputView]  # (body, *, check_tools) -> InputView


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # as metrics and the audit log label it: chat, completions, responses
    path: str
    request_model: type[BaseModel]
    input_param: str  # the request field a blocked input is reported on
    read_input: InputReader
    output: Output
    raw: RawStream  # the raw relay's end markers and error event
