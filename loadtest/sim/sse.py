"""Server-sent-event chunks shaped exactly like vLLM's OpenAI server sends them.

Every token of every stream goes through here, so a chunk is built from bytes
prepared once per request plus one ``orjson.dumps`` of the token text, instead
of serialising a whole dict per chunk.
"""

from __future__ import annotations

import orjson

DONE = b"data: [DONE]\n\n"

CHAT = "chat"
COMPLETION = "completion"


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    # vLLM's UsageInfo field order.
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


class ChunkEncoder:
    """Encodes one stream's chunks; ``kind`` is ``"chat"`` or ``"completion"``.

    Field sets and order match vLLM 0.32's (checked against a live server): null
    fields included, ``system_fingerprint`` on the last chunk only (the usage
    chunk when ``include_usage`` is on). With ``continuous_usage`` (vLLM's
    ``stream_options.continuous_usage_stats``) every chunk carries the usage so far.
    """

    def __init__(
        self,
        kind: str,
        request_id: str,
        created: int,
        model: str,
        *,
        prompt_tokens: int = 0,
        include_usage: bool = False,
        continuous_usage: bool = False,
        system_fingerprint: str = "",
    ) -> None:
        if kind not in (CHAT, COMPLETION):
            raise ValueError(f"unknown chunk kind {kind!r}")
        self.kind = kind
        self._prompt_tokens = prompt_tokens
        self._include_usage = include_usage
        self._continuous_usage = continuous_usage
        self._fingerprint = b',"system_fingerprint":' + orjson.dumps(system_fingerprint)
        obj = "chat.completion.chunk" if kind == CHAT else "text_completion"
        header = orjson.dumps({"id": request_id, "object": obj, "created": created, "model": model})
        # '{"id":...,"model":"m"' -- left open so choices (and usage) can follow.
        self._head = b"data: " + header[:-1]
        if kind == CHAT:
            self._text_open = b',"choices":[{"index":0,"delta":{"content":'
            self._text_mid = b'},"logprobs":null,"finish_reason":'
            self._text_ids = b',"token_ids":null}]'
        else:
            self._text_open = b',"choices":[{"index":0,"text":'
            self._text_mid = b',"logprobs":null,"finish_reason":'
            self._text_ids = b',"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]'

    def role(self) -> bytes:
        """The chat stream's first chunk: the assistant role and empty content."""
        return (
            self._head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}]'
            + self._usage_field(0)
            + b',"prompt_token_ids":null,"prompt_text":null}\n\n'
        )

    def text(self, text: str, completion_tokens: int = 0) -> bytes:
        """A content chunk; ``completion_tokens`` only matters with continuous usage."""
        return (
            self._head
            + self._text_open
            + orjson.dumps(text)
            + self._text_mid
            + b"null"
            + self._text_ids
            + self._usage_field(completion_tokens)
            + b"}\n\n"
        )

    def final(self, text: str, finish_reason: str, completion_tokens: int = 0) -> bytes:
        """The last content chunk: vLLM sends the last token with the finish reason."""
        ids = self._text_ids
        if self.kind == CHAT:
            ids = b',"stop_reason":null' + ids
        fingerprint = b"" if self._include_usage else self._fingerprint
        return (
            self._head
            + self._text_open
            + orjson.dumps(text)
            + self._text_mid
            + orjson.dumps(finish_reason)
            + ids
            + self._usage_field(completion_tokens)
            + fingerprint
            + b"}\n\n"
        )

    def usage(self, completion_tokens: int) -> bytes:
        """The ``stream_options.include_usage`` chunk: no choices, just the totals."""
        return (
            self._head
            + b',"choices":[],"usage":'
            + orjson.dumps(usage_dict(self._prompt_tokens, completion_tokens))
            + self._fingerprint
            + b"}\n\n"
        )

    def _usage_field(self, completion_tokens: int) -> bytes:
        if not self._continuous_usage:
            return b""
        # vLLM's per-chunk usage also spells out the (empty) completion details.
        usage = {**usage_dict(self._prompt_tokens, completion_tokens), "completion_tokens_details": None}
        return b',"usage":' + orjson.dumps(usage)
