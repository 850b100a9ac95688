"""``POST /v1/completions``: a prompt (text or token ids) in, a choice's ``text`` out;
chunks end with ``[DONE]``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, model_validator
from pydantic import Field as ModelField

from gateway.answer import Field, str_or_none
from gateway.endpoints.base import Endpoint
from gateway.endpoints.choices import RAW_STREAM, ChoiceFormat, ChoiceOutput
from gateway.input_text import InputView, TokenPrompt, Uncheckable, dotted, new_view


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = ModelField(min_length=1)
    # Token ids strictly: a lax ``[1.0, true]`` would be checked as one thing and read by
    # the upstream as another.
    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]] | None = None
    # vLLM's base64 prompt embeddings (``--enable-prompt-embeds``): kept to be refused
    # or counted by the input check (gateway.uncheckable), never read.
    prompt_embeds: Any = None
    stream: bool = False

    @model_validator(mode="after")
    def _prompt_or_embeds(self) -> CompletionRequest:
        if self.prompt is None and self.prompt_embeds in (None, [], ""):
            raise ValueError("either prompt or prompt_embeds must be given")
        return self


def read_completions(body: dict[str, Any], *, check_tools: bool) -> InputView:
    """A completions request: one text per text prompt; token-id prompts are listed to be
    detokenized or refused (``gateway.uncheckable``)."""
    view = new_view(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        view.add([(("prompt",), prompt)])
    elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        for index, tokens in enumerate(prompt):
            view.token_prompts.append(TokenPrompt(("prompt", index), tokens))
    elif isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
        view.token_prompts.append(TokenPrompt(("prompt",), prompt))
    elif isinstance(prompt, list):
        for index, item in enumerate(prompt):
            view.add([(("prompt", index), item)])
    view.uncheckable.extend(Uncheckable("token_ids", dotted(p.path)) for p in view.token_prompts)
    return view


class CompletionFormat(ChoiceFormat):
    logprob_key = "tokens"

    def texts(self, choice: dict, *, streamed: bool) -> list[Field]:
        text = str_or_none(choice.get("text"), "choice.text")
        return [("text", text)] if text else []

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
