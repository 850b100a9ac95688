"""The API routes the bench can send its load over (``--route``), one request shape each.

Pure: the Locust rounds, the warm-up and the safety pass build their requests and read
whole answers here, so every part of a run sends the same thing.

- ``chat``: ``POST /v1/chat/completions``, streamed with ``stream_options.include_usage``
  (the usage event gives the output token count);
- ``responses``: ``POST /v1/responses`` (the OpenAI Responses API), whose stream is typed
  events ending with ``response.completed`` (``response.incomplete`` when
  ``max_output_tokens`` or a monitor cut it); the final Response carries the usage.
"""

from __future__ import annotations

from typing import Any

CHAT = "chat"
RESPONSES = "responses"
ROUTES = (CHAT, RESPONSES)
PATHS = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses"}


def request_body(
    route: str, model: str, prompt: str, max_tokens: int, *, stream: bool, ignore_eos: bool
) -> dict[str, Any]:
    body: dict[str, Any]
    if route == RESPONSES:
        body = {"model": model, "input": prompt, "max_output_tokens": max_tokens, "stream": stream}
    else:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM extension; the gateway passes it through
    return body


def whole_answer(route: str, data: dict[str, Any]) -> tuple[str, str | None]:
    """``(text, finish reason)`` of a non-streamed answer; a Responses answer a monitor
    cut (``incomplete``, reason ``content_filter``) reads as chat's ``content_filter``."""
    if route == RESPONSES:
        texts = [
            part.get("text") or ""
            for item in data.get("output") or ()
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content") or ()
            if isinstance(part, dict) and part.get("type") == "output_text"
        ]
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "".join(texts), reason or data.get("status")
    choice = (data.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    return text, choice.get("finish_reason")
