"""``POST /v1/completions``: a prompt (text or token ids) in, a choice's ``text`` out;
chunks end with ``[DONE]``."""

from __future__ import annotations

from typing import Any

from gateway.answer import Field, str_or_none
from gateway.endpoints.base import Endpoint
from gateway.endpoints.choices import RAW_STREAM, ChoiceFormat, ChoiceOutput
from gateway.input_text import read_completions
from gateway.protocol import CompletionRequest


class CompletionFormat(ChoiceFormat):
    logprob_key = "tokens"

    def texts(self, choice: dict, *, streamed: bool) -> list[Field]:
        text = str_or_none(choice.get("text"), "choice.text")
        return [Field("text", text)] if text else []

    def set_field(self, choice: dict, key: str, text: str, *, streamed: bool) -> None:
        if key == "logprobs":
            raise ValueError("logprobs are rewritten with redact_logprobs")
        choice["text"] = text

    def token(self, entry: Any) -> str:
        return str_or_none(entry, "logprobs.tokens") or ""

    def mask_entry(self, logprobs: dict, at: int, text: str) -> None:
        logprobs["tokens"][at] = text
        tops = logprobs.get("top_logprobs")
        if isinstance(tops, list) and at < len(tops):
            tops[at] = {text: 0.0} if text else {}

    def clear(self, choice: dict, refusal: str, *, streamed: bool) -> None:
        choice["text"] = refusal
        if choice.get("logprobs") is not None:
            choice["logprobs"] = None
        choice["finish_reason"] = "content_filter"

    def blocked_choice(self, index: int) -> dict[str, Any]:
        return {"index": index, "finish_reason": "content_filter", "logprobs": None, "text": ""}


COMPLETIONS = Endpoint(
    name="completions",
    path="/v1/completions",
    request_model=CompletionRequest,
    input_param="prompt",
    read_input=read_completions,
    output=ChoiceOutput(CompletionFormat()),
    raw=RAW_STREAM,
)
