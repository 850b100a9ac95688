"""The OpenAI wire format as far as the simulator needs it: parse requests, build bodies.

Requests are read as plain dicts rather than pydantic models: the simulator
only needs a few fields, must accept (and ignore) any other field the way vLLM
accepts sampling parameters it does not use here, and must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from loadtest.sim.sse import CHAT, COMPLETION, usage_dict
from loadtest.sim.tokens import count_chat_tokens, count_tokens


COMPLETION_DEFAULT_MAX_TOKENS = 16


class RequestError(Exception):
    """A request the simulator refuses; mapped to an OpenAI error body in one place."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    """What the simulator takes from a chat or completion request."""

    kind: str
    model: str | None
    # The text echo mode says back: the last user message, or the prompt.
    echo_text: str
    prompt_tokens: int
    max_tokens: int | None
    ignore_eos: bool
    stream: bool
    include_usage: bool
    continuous_usage: bool


def parse_chat(body: bytes) -> GenerationRequest:
    data = _load(body)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` must be a non-empty list", param="messages")
    texts = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, "each message needs a string `role`", param="messages")
        texts.append(_message_text(message.get("content")))
    user_texts = [text for message, text in zip(messages, texts) if message["role"] == "user"]
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    return _build(CHAT, data, user_texts[-1] if user_texts else texts[-1],
                  count_chat_tokens(texts), max_tokens)


def parse_completion(body: bytes) -> GenerationRequest:
    data = _load(body)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        text, prompt_tokens = prompt, count_tokens(prompt)
    elif (isinstance(prompt, list) and prompt
          and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
        # Token ids: there is no text to echo, only a length.
        text, prompt_tokens = "", len(prompt)
    else:
        raise RequestError(400, "`prompt` must be a string, a list of one string, or a list "
                                "of token ids (batched prompts are not simulated)",
                           param="prompt")
    # The legacy completions API (and vLLM) default to 16 tokens when the field is absent.
    return _build(COMPLETION, data, text, prompt_tokens,
                  data.get("max_tokens", COMPLETION_DEFAULT_MAX_TOKENS))


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "request body must be a JSON object")
    return data


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multimodal form: only the text parts count.
        return "\n".join(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    raise RequestError(400, "message `content` must be a string or a list of parts",
                       param="messages")


def _build(kind: str, data: dict[str, Any], echo_text: str, prompt_tokens: int,
           max_tokens: Any) -> GenerationRequest:
    if max_tokens is not None and (not isinstance(max_tokens, int)
                                   or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError(400, "`max_tokens` must be a positive integer", param="max_tokens")
    n = data.get("n", 1)
    if n not in (None, 1):
        raise RequestError(400, "the simulator only generates n=1", param="n")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "`model` must be a string", param="model")
    stream = data.get("stream") is True
    options = data.get("stream_options")
    if options is not None and not stream:
        # vLLM refuses this combination the same way.
        raise RequestError(400, "Stream options can only be defined when `stream=True`.",
                           param="stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError(400, "`stream_options` must be an object", param="stream_options")
    options = options or {}
    return GenerationRequest(
        kind=kind, model=model, echo_text=echo_text, prompt_tokens=prompt_tokens,
        max_tokens=max_tokens, ignore_eos=data.get("ignore_eos") is True, stream=stream,
        include_usage=options.get("include_usage") is True,
        continuous_usage=options.get("continuous_usage_stats") is True,
    )


def resolve_max_tokens(request: GenerationRequest, max_model_len: int) -> int:
    """The token budget, as vLLM computes it: what fits in the context window."""
    room = max_model_len - request.prompt_tokens
    if room < 1:
        raise RequestError(
            400, f"This model's maximum context length is {max_model_len} tokens. However, "
                 f"your request has {request.prompt_tokens} input tokens.",
            param="messages" if request.kind == CHAT else "prompt")
    if request.max_tokens is None:
        return room
    if request.max_tokens > room:
        raise RequestError(
            400, f"'max_tokens' is too large: {request.max_tokens}. This model's maximum "
                 f"context length is {max_model_len} tokens and your request has "
                 f"{request.prompt_tokens} input tokens.", param="max_tokens")
    return request.max_tokens


def error_body(error: RequestError) -> bytes:
    return orjson.dumps({"error": {"message": error.message, "type": error.err_type,
                                   "param": error.param, "code": error.status}})


def response_body(kind: str, request_id: str, created: int, model: str, text: str,
                  finish_reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    """The non-streamed chat completion or completion."""
    if kind == CHAT:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None,
                        "tool_calls": []},
            "logprobs": None, "finish_reason": finish_reason, "stop_reason": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None,
                  "finish_reason": finish_reason, "stop_reason": None}
        obj = "text_completion"
    return orjson.dumps({
        "id": request_id, "object": obj, "created": created, "model": model,
        "choices": [choice], "usage": usage_dict(prompt_tokens, completion_tokens),
    })


def models_body(model: str, created: int, max_model_len: int) -> bytes:
    return orjson.dumps({"object": "list", "data": [{
        "id": model, "object": "model", "created": created, "owned_by": "vllm",
        "root": model, "parent": None, "max_model_len": max_model_len, "permission": [],
    }]})
