"""One request's stream timings and token counts, recorded the same way by both relays.

TTFT ends at the first write to the client that carries text; ITL is the gap between
writes that carry text; completion tokens come from the upstream's ``usage`` when it
reports one, else from the text-carrying events sent. So ``taxgate_itl_seconds`` and
``taxgate_completion_tokens_total`` mean the same on the raw and the monitored path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.answer import ProtocolViolation, usage_counts
from gateway.context import RequestContext

log = logging.getLogger("taxgate.relay")


class StreamRecorder:
    __slots__ = ("ctx", "clock", "upstream_error", "_itl", "_last", "_events", "_usage")

    def __init__(
        self, ctx: RequestContext, itl, upstream_error: Callable[[str], None], clock: Callable[[], float]
    ) -> None:
        self.ctx = ctx
        self.clock = clock
        self.upstream_error = upstream_error
        self._itl = itl
        self._last = 0.0
        self._events = 0
        self._usage: tuple[int, int] | None = None

    def read(self) -> None:
        """An upstream read arrived."""
        if self.ctx.upstream_first is None:
            self.ctx.upstream_first = self.clock()

    def sent(self, text_events: int) -> None:
        """A write to the client went out, carrying ``text_events`` events with text."""
        now = self.clock()
        self.ctx.last_sent = now
        if not text_events:
            return
        if self.ctx.first_sent is None:
            self.ctx.first_sent = now
        else:
            self._itl.observe(now - self._last)
        self._last = now
        self._events += text_events

    def usage(self, usage: Any) -> None:
        try:
            counts = usage_counts(usage)
        except ProtocolViolation as exc:
            # Counted and logged; the events sent stand in for the token count.
            self.upstream_error("protocol")
            log.warning("request %s: upstream usage ignored: %s", self.ctx.request_id, exc)
            return
        if counts is not None:
            self._usage = counts

    def upstream_done(self) -> None:
        self.ctx.upstream_last = self.clock()

    def delivered(self) -> None:
        """The write carrying the stream's last event went out. A client may close as
        soon as it reads it (the sync ``openai`` client does, at ``[DONE]``), while the
        relay still waits for the upstream's end of body: that is a finished request,
        not a disconnect."""
        self.ctx.delivered = True
        if self.ctx.upstream_last is None:
            self.ctx.upstream_last = self.clock()

    def close(self) -> None:
        """Token counts into the request context (called once, whatever happened)."""
        if self._usage is not None:
            self.ctx.prompt_tokens, self.ctx.completion_tokens = self._usage
        else:
            self.ctx.completion_tokens = self._events
