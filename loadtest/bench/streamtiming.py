"""Per-request timing of an OpenAI-style SSE stream, as `vllm bench serve` defines it.

Pure: the caller feeds each SSE line with the time it arrived; nothing here reads a
socket or a clock, so the Locust user, the warm-up loop and the tests share one
definition of TTFT, ITL, E2E and the output token count.

- TTFT: request sent -> first chunk whose delta carries non-empty text.
- ITL: every gap between consecutive text-carrying chunks (one per gap, not averaged).
- E2E: request sent -> the last line of the stream (``[DONE]`` or the final chunk).
- Output tokens: ``usage.completion_tokens`` when the server reports it (we ask with
  ``stream_options.include_usage``), else the number of text-carrying chunks.

A Responses API stream (``route="responses"``) is read by the same definitions over its
typed events: the text-carrying ones are ``response.output_text.delta``, the last line is
the final event (``response.completed``, or ``response.incomplete``), whose Response
carries ``usage.output_tokens``; an ``error`` event or ``response.failed`` is an error,
an ``incomplete`` answer with reason ``content_filter`` is a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

DATA_PREFIX = b"data:"
DONE = b"[DONE]"
CONTENT_FILTER = "content_filter"
RESPONSES = "responses"
TEXT_DELTA = "response.output_text.delta"
RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


@dataclass(slots=True)
class StreamResult:
    """What one streamed request measured; times in seconds from the request start."""

    ttft_s: float | None = None
    itls_s: list[float] = field(default_factory=list)
    e2e_s: float | None = None
    output_tokens: int = 0
    text_chunks: int = 0
    finish_reason: str | None = None
    text: str = ""
    error: str | None = None

    @property
    def blocked(self) -> bool:
        """The gateway cut or refused the output (output-stage block)."""
        return self.finish_reason == CONTENT_FILTER


class StreamTimer:
    """Feed SSE lines (bytes, with or without the trailing newline) and their arrival time.

    ``keep_text`` collects the generated text (the safety pass needs it; the load
    test does not, and skipping the join saves CPU on the load generator). ``route``:
    ``chat`` (chat or text completion chunks) or ``responses``.
    """

    def __init__(self, *, keep_text: bool = False, route: str = "chat") -> None:
        self._keep_text = keep_text
        self._take_event = self._take_response_event if route == RESPONSES else self._take_chunk
        self._parts: list[str] = []
        self._last_text_at: float | None = None
        self._usage_tokens: int | None = None
        self.result = StreamResult()

    def feed(self, line: bytes, at_s: float) -> None:
        line = line.strip()
        if not line.startswith(DATA_PREFIX):
            return  # blank separators, comments (": ping"), "event:" lines
        payload = line[len(DATA_PREFIX) :].strip()
        self.result.e2e_s = at_s
        if payload == DONE:
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.result.error = f"malformed SSE data: {payload[:80]!r}"
            return
        self._take_event(event, at_s)

    def _take_chunk(self, event: dict, at_s: float) -> None:
        if "error" in event:
            # vLLM and the gateway report mid-stream failures as an error event.
            err = event["error"]
            self.result.error = str(err.get("message", err) if isinstance(err, dict) else err)
            return
        usage = event.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            self._usage_tokens = int(usage["completion_tokens"])
        for choice in event.get("choices") or ():
            text = _choice_text(choice)
            if text:
                self._take_text(text, at_s)
            reason = choice.get("finish_reason")
            if reason:
                self.result.finish_reason = reason

    def _take_response_event(self, event: dict, at_s: float) -> None:
        kind = event.get("type")
        if kind == TEXT_DELTA:
            text = event.get("delta")
            if text:
                self._take_text(text, at_s)
        elif kind in RESPONSE_ENDS:
            response = event.get("response") or {}
            usage = response.get("usage")
            if usage and usage.get("output_tokens") is not None:
                self._usage_tokens = int(usage["output_tokens"])
            details = response.get("incomplete_details") or {}
            self.result.finish_reason = details.get("reason") or response.get("status")
            if kind == "response.failed":
                error = response.get("error") or {}
                self.result.error = str(error.get("message") or "response.failed")
        elif kind == "error":
            self.result.error = str(event.get("message") or event.get("code") or "error event")
        elif kind is None and "error" in event:
            self._take_chunk(event, at_s)  # an OpenAI error body sent as an event

    def _take_text(self, text: str, at_s: float) -> None:
        result = self.result
        if self._last_text_at is None:
            result.ttft_s = at_s
        else:
            result.itls_s.append(at_s - self._last_text_at)
        self._last_text_at = at_s
        result.text_chunks += 1
        if self._keep_text:
            self._parts.append(text)

    def finish(self) -> StreamResult:
        """Close the measurement; the result is final after this."""
        result = self.result
        result.output_tokens = self._usage_tokens if self._usage_tokens is not None else result.text_chunks
        if self._keep_text:
            result.text = "".join(self._parts)
        if result.error is None and result.ttft_s is None and not result.blocked:
            result.error = "stream ended without any generated text"
        return result


def _choice_text(choice: dict) -> str:
    # chat.completion.chunk carries delta.content; text completions carry text.
    delta = choice.get("delta")
    if delta is not None:
        return delta.get("content") or ""
    return choice.get("text") or ""
