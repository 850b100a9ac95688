"""The OpenAI wire format as far as the simulator needs it: parse requests, build bodies.

Requests are read as plain dicts rather than pydantic models: the simulator
only needs a few fields, must accept (and ignore) any other field the way vLLM
accepts sampling parameters it does not use here, and must stay cheap.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from loadtest.sim.sse import CHAT, COMPLETION, usage_dict
from loadtest.sim.tokens import count_chat_tokens, count_tokens, decode, encode

COMPLETION_DEFAULT_MAX_TOKENS = 16
# vLLM's reads "vllm-<version>-<config hash>"; ours says what answered.
SYSTEM_FINGERPRINT = "taxgate-sim"


class RequestError(Exception):
    """A request the simulator refuses; mapped to an OpenAI error body in one place."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError", param: str | None = None) -> None:
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
    if not isinstance(messages, list):
        raise RequestError(400, "`messages` must be a list", "Bad Request", "body.messages")
    if not messages:
        raise RequestError(400, "Cannot apply chat template to an empty conversation. Provide at least one message.")
    texts = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, "each message needs a string `role`", param="messages")
        texts.append(_message_text(message.get("content")))
    user_texts = [text for message, text in zip(messages, texts, strict=True) if message["role"] == "user"]
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    return _build(CHAT, data, user_texts[-1] if user_texts else texts[-1], count_chat_tokens(texts), max_tokens)


def parse_completion(body: bytes) -> GenerationRequest:
    data = _load(body)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        text, prompt_tokens = prompt, count_tokens(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        # Token ids: echo says back their text when they are the simulator's own ids.
        text, prompt_tokens = _decoded_or_empty(prompt), len(prompt)
    else:
        raise RequestError(
            400,
            "`prompt` must be a string, a list of one string, or a list "
            "of token ids (batched prompts are not simulated)",
            param="prompt",
        )
    # The legacy completions API (and vLLM) default to 16 tokens when the field is absent.
    return _build(COMPLETION, data, text, prompt_tokens, data.get("max_tokens", COMPLETION_DEFAULT_MAX_TOKENS))


def _decoded_or_empty(ids: list[int]) -> str:
    try:
        return decode(ids)
    except ValueError:
        return ""


def parse_tokenize(body: bytes) -> tuple[str | None, list[int]]:
    """vLLM's ``POST /tokenize`` for a prompt: (model, token ids)."""
    data = _load(body)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise RequestError(
            400,
            "`prompt` must be a string (the simulator tokenizes prompts, not messages)",
            "Bad Request",
            "body.prompt",
        )
    return _model(data), encode(prompt)


def parse_detokenize(body: bytes) -> tuple[str | None, str]:
    """vLLM's ``POST /detokenize``: (model, text); 400 for ids that are no token."""
    data = _load(body)
    tokens = data.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise RequestError(400, "`tokens` must be a list of integers", "Bad Request", "body.tokens")
    try:
        return _model(data), decode(tokens)
    except ValueError as exc:
        raise RequestError(400, str(exc), param="tokens") from None


def tokenize_body(tokens: list[int], max_model_len: int) -> bytes:
    return orjson.dumps({"count": len(tokens), "max_model_len": max_model_len, "tokens": tokens, "token_strs": None})


def detokenize_body(text: str) -> bytes:
    return orjson.dumps({"prompt": text})


def _model(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "`model` must be a string", param="model")
    return model


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # vLLM reports body problems through FastAPI's validation handler: type "Bad Request".
        raise RequestError(400, f"JSON decode error: {exc}", "Bad Request", "body") from None
    if not isinstance(data, dict):
        raise RequestError(
            400, "Input should be a valid dictionary or object to extract fields from", "Bad Request", "body"
        )
    return data


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multimodal form: only the text parts count.
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise RequestError(400, "message `content` must be a string or a list of parts", param="messages")


def _build(kind: str, data: dict[str, Any], echo_text: str, prompt_tokens: int, max_tokens: Any) -> GenerationRequest:
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise RequestError(400, "`max_tokens` must be an integer", "Bad Request", "body.max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise RequestError(
            400,
            f"max_tokens must be at least 1, got {max_tokens}. (parameter=max_tokens, value={max_tokens})",
            param="max_tokens",
        )
    n = data.get("n", 1)
    if n not in (None, 1):
        raise RequestError(400, "the simulator only generates n=1", param="n")
    model = _model(data)
    stream = data.get("stream") is True
    options = data.get("stream_options")
    if options is not None and not stream:
        # vLLM refuses this combination the same way.
        raise RequestError(
            400,
            "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
            param="stream_options",
        )
    if options is not None and not isinstance(options, dict):
        raise RequestError(400, "`stream_options` must be an object", param="stream_options")
    options = options or {}
    return GenerationRequest(
        kind=kind,
        model=model,
        echo_text=echo_text,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        ignore_eos=data.get("ignore_eos") is True,
        stream=stream,
        include_usage=options.get("include_usage") is True,
        continuous_usage=options.get("continuous_usage_stats") is True,
    )


def resolve_max_tokens(request: GenerationRequest, max_model_len: int) -> int:
    """The token budget as vLLM computes it: capped to what fits in the context window."""
    room = max_model_len - request.prompt_tokens
    if room < 1:
        raise RequestError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, "
            f"your request has {request.prompt_tokens} input tokens. Please reduce the "
            "length of the input messages.",
            param="messages" if request.kind == CHAT else "prompt",
        )
    if request.max_tokens is None:
        return room
    if request.max_tokens > max_model_len:
        raise RequestError(
            400,
            f"max_tokens={request.max_tokens} cannot be greater than "
            f"max_model_len={max_model_len}. Please request fewer output tokens. "
            f"(parameter=max_tokens, value={request.max_tokens})",
            param="max_tokens",
        )
    # Within the window but past its end with the prompt: vLLM stops at the window.
    return min(request.max_tokens, room)


def error_body(error: RequestError) -> bytes:
    return orjson.dumps(
        {"error": {"message": error.message, "type": error.err_type, "param": error.param, "code": error.status}}
    )


def response_body(
    kind: str,
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    system_fingerprint: str,
) -> bytes:
    """The non-streamed chat completion or completion, with vLLM's field set."""
    usage = {
        **usage_dict(prompt_tokens, completion_tokens),
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    if kind == CHAT:
        message = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "reasoning": None,
        }
        return orjson.dumps(
            {
                "id": request_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                        "stop_reason": None,
                        "token_ids": None,
                        "routed_experts": None,
                    }
                ],
                "service_tier": None,
                "system_fingerprint": system_fingerprint,
                "usage": usage,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "prompt_text": None,
                "kv_transfer_params": None,
                "ec_transfer_params": None,
                "metrics": None,
            }
        )
    return orjson.dumps(
        {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "stop_reason": None,
                    "token_ids": None,
                    "prompt_logprobs": None,
                    "prompt_token_ids": None,
                    "routed_experts": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": system_fingerprint,
            "usage": usage,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
    )


def models_body(model: str, created: int, max_model_len: int, extra: tuple[tuple[str, int], ...] = ()) -> bytes:
    """vLLM's model list: ``model`` first, then ``extra`` (name, max_model_len) models."""

    def entry(name: str, length: int) -> dict:
        permission = {
            "id": "modelperm-" + secrets.token_hex(8),
            "object": "model_permission",
            "created": created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": length,
            "permission": [permission],
        }

    return orjson.dumps(
        {"object": "list", "data": [entry(model, max_model_len), *(entry(name, length) for name, length in extra)]}
    )


def request_id(kind: str) -> str:
    # vLLM's ids: a prefix and 16 hex digits.
    return ("chatcmpl-" if kind == CHAT else "cmpl-") + secrets.token_hex(8)
