"""The ``uncheckable_input`` rule: input that no text monitor can read is never forwarded
unseen unless the operator said so.

It applies whenever an enforcing (non-shadow) input monitor is configured. Per kind of
uncheckable input (``gateway.input_text``):

- ``token_ids``: ``detokenize`` (default) turns them into text with the upstream's own
  tokenizer (``POST /detokenize``) and the monitors check that text; ``reject``; ``allow``.
- ``embeddings`` (``prompt_embeds``, ``*_embeds`` content parts): ``reject`` (default) or
  ``allow``; they cannot be turned back into text.
- ``media`` (image, audio, video and file parts, unknown part types): ``reject`` (default)
  or ``allow``. No built-in monitor reads media, and media can carry instructions.

A plain string sets every kind at once: ``detokenize`` (the default: token ids
detokenized, the rest refused), ``reject`` or ``allow``. Refusals are 400
``uncheckable_input`` naming the setting; allowed parts are counted in
``taxgate_unchecked_inputs_total{kind}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.errors import BadRequest
from gateway.input_text import InputView, TokenPrompt, Uncheckable
from gateway.metrics import GatewayMetrics

SETTING = "uncheckable_input"
# Which policy field governs each kind.
POLICY_FIELD = {
    "token_ids": "token_ids",
    "embeddings": "embeddings",
    "image": "media",
    "audio": "media",
    "video": "media",
    "file": "media",
    "other": "media",
}
_DESCRIBED = {
    "token_ids": "a token-id prompt",
    "embeddings": "prompt embeddings",
    "image": "image content",
    "audio": "audio content",
    "video": "video content",
    "file": "file content",
    "other": "a content part of an unknown type",
}


class UncheckableRejected(BadRequest):
    code = "uncheckable_input"


class UncheckablePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: Literal["detokenize", "reject", "allow"] = "detokenize"
    embeddings: Literal["reject", "allow"] = "reject"
    media: Literal["reject", "allow"] = "reject"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "detokenize":
            return {}
        if data in ("reject", "allow"):
            return {"token_ids": data, "embeddings": data, "media": data}
        if isinstance(data, str):
            raise ValueError(
                f"{data!r} is not one of detokenize, reject, allow (or a mapping of token_ids, embeddings, media)"
            )
        return data

    def mode(self, kind: str) -> str:
        return getattr(self, POLICY_FIELD[kind])


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a request's uncheckable input (``rejected`` wins over the rest)."""

    rejected: Uncheckable | None
    allowed: list[Uncheckable]
    detokenize: list[TokenPrompt]


def plan(view: InputView, policy: UncheckablePolicy) -> Plan:
    allowed: list[Uncheckable] = []
    for item in view.uncheckable:
        mode = policy.mode(item.kind)
        if mode == "reject":
            return Plan(item, [], [])
        if mode == "allow":
            allowed.append(item)
    detokenize = view.token_prompts if policy.token_ids == "detokenize" else []
    return Plan(None, allowed, list(detokenize))


def rejection(item: Uncheckable) -> UncheckableRejected:
    field = POLICY_FIELD[item.kind]
    return UncheckableRejected(
        f"{item.param}: {_DESCRIBED[item.kind]} cannot be read by this gateway's input "
        f"monitors, and {SETTING}.{field} is 'reject'; send text instead",
        param=item.param,
    )


def detokenize_failed(prompt_param: str, reason: str) -> UncheckableRejected:
    return UncheckableRejected(
        f"{prompt_param}: the upstream could not detokenize this token-id prompt ({reason}), "
        f"so the input monitors cannot check it ({SETTING}.token_ids is 'detokenize'); send "
        "text instead",
        param=prompt_param,
    )


Detokenize = Callable[[list[TokenPrompt]], Awaitable[list[str]]]


async def settle(view: InputView, policy: UncheckablePolicy, detokenize: Detokenize, metrics: GatewayMetrics) -> None:
    """Refuse, detokenize into ``view.texts``, or count what the monitors cannot read.

    Raises UncheckableRejected (400). Nothing is counted as unchecked for a request
    that is then refused, so the counter means "reached the upstream unchecked".
    """
    decided = plan(view, policy)
    if decided.rejected is not None:
        metrics.uncheckable_rejected.labels(decided.rejected.kind, "setting").inc()
        raise rejection(decided.rejected)
    if decided.detokenize:
        try:
            texts = await detokenize(decided.detokenize)
        except UncheckableRejected:
            metrics.uncheckable_rejected.labels("token_ids", "detokenize_failed").inc()
            raise
        for prompt, text in zip(decided.detokenize, texts, strict=True):
            view.add_detokenized(prompt, text)
        metrics.detokenized_prompts.inc(len(texts))
    for item in decided.allowed:
        metrics.unchecked_inputs.labels(item.kind).inc()
