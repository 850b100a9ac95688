"""What input monitors read of a request, where each piece lives, and what they cannot read.

A request is read as the model will see it: one text per chat message (its text content
parts, reasoning and tool calls joined by newlines, as vLLM joins text parts), one per
tool definition (``check_tools``), one per document, one per text prompt. Monitors score
whole messages, so a phrase split across two content parts is still scored as one.
Each text remembers the body fields (``Segment``) it was joined from; a redaction is
mapped back onto those fields, so every part is rewritten in place and multi-part
content keeps its order (text parts stay where they were among the image parts).

What no text monitor can read is listed as ``Uncheckable`` by kind: token-id prompts
(``token_ids``, which the gateway can detokenize), prompt or media embeddings
(``embeddings``) and media content parts (``image``, ``audio``, ``video``, ``file``,
and ``other`` for a part type this module does not know). ``gateway.uncheckable``
decides what happens to them. Everything here is pure: no I/O. Each endpoint's reader
(``read_chat`` in ``gateway.endpoints.chat``, ...) builds its ``InputView`` with the
helpers here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import BadRequest
from monitors.base import Span
from monitors.redact import apply_redactions

SEPARATOR = "\n"
Path = tuple[str | int, ...]

# Part type -> the key holding its text (vLLM's text part types).
TEXT_PARTS = {
    "text": "text",
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
    "thinking": "thinking",
    "tool_reference": "name",
}
# Part type -> uncheckable kind. A part with one of these keys is media whatever its
# ``type`` says: vLLM infers the type from them when ``type`` is missing or a ``uuid``
# is given, so a text-typed part must not smuggle an image past the check.
MEDIA_PARTS = {
    "image_url": "image",
    "input_image": "image",
    "image_pil": "image",
    "audio_url": "audio",
    "input_audio": "audio",
    "video_url": "video",
    "file": "file",
    "input_file": "file",
    "image_embeds": "embeddings",
    "audio_embeds": "embeddings",
    "video_embeds": "embeddings",
    "prompt_embeds": "embeddings",
}
KINDS = ("token_ids", "embeddings", "image", "audio", "video", "file", "other")


@dataclass(frozen=True, slots=True)
class Segment:
    """A body field a text was joined from: ``text[start:start + len(value)]``."""

    path: Path
    start: int
    value: str


@dataclass(frozen=True, slots=True)
class Uncheckable:
    kind: str
    param: str  # the field, dotted, for the client's error message


@dataclass(frozen=True, slots=True)
class TokenPrompt:
    """A token-id prompt at ``path``; once detokenized its text joins ``texts``."""

    path: Path
    tokens: list[int]


@dataclass(slots=True)
class InputView:
    texts: list[str] = field(default_factory=list)
    segments: list[list[Segment]] = field(default_factory=list)
    uncheckable: list[Uncheckable] = field(default_factory=list)
    token_prompts: list[TokenPrompt] = field(default_factory=list)

    def add(self, fields: Sequence[tuple[Path, str]]) -> None:
        """One text joined from ``fields`` (skipped when there are none)."""
        if not fields:
            return
        segments, position = [], 0
        for path, value in fields:
            segments.append(Segment(path, position, value))
            position += len(value) + len(SEPARATOR)
        self.texts.append(SEPARATOR.join(value for _, value in fields))
        self.segments.append(segments)

    def add_detokenized(self, prompt: TokenPrompt, text: str) -> None:
        self.add([(prompt.path, text)])

    def redacted_body(self, body: dict[str, Any], redactions: Sequence[Sequence[Span]]) -> bytes:
        """``body`` re-encoded with each text's spans masked in the fields they fall in.

        A detokenized prompt that was redacted is sent as its redacted text; then every
        token prompt of the request goes as text, since vLLM takes a batch of strings or
        a batch of token lists, not a mix.
        """
        token_paths = {prompt.path for prompt in self.token_prompts}
        rewrote_tokens = False
        for segments, spans in zip(self.segments, redactions, strict=True):
            if not spans:
                continue
            for segment in segments:
                local = _clip(spans, segment.start, len(segment.value))
                if local:
                    _set(body, segment.path, apply_redactions(segment.value, local))
                    rewrote_tokens |= segment.path in token_paths
        if rewrote_tokens:
            for segments in self.segments:
                for segment in segments:
                    if segment.path in token_paths and isinstance(_get(body, segment.path), list):
                        _set(body, segment.path, segment.value)
        return orjson.dumps(body)


def new_view(body: dict[str, Any]) -> InputView:
    """A new view of a request (an endpoint's reader fills it), with its prompt
    embeddings listed when it has some."""
    view = InputView()
    if body.get("prompt_embeds") not in (None, [], ""):
        view.uncheckable.append(Uncheckable("embeddings", "prompt_embeds"))
    return view


def message_fields(message: dict[str, Any], where: Path, view: InputView) -> Iterator[tuple[Path, str]]:
    content = message.get("content")
    if isinstance(content, str):
        yield (*where, "content"), content
    elif isinstance(content, list):
        for index, part in enumerate(content):
            yield from part_fields(part, (*where, "content", index), view)
    for key in ("reasoning_content", "reasoning"):
        if message.get(key) is not None:
            yield (*where, key), text_field(message[key], (*where, key))
    for index, call in enumerate(as_list(message.get("tool_calls"))):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        for key in ("name", "arguments"):
            if function.get(key) is not None:
                path = (*where, "tool_calls", index, "function", key)
                yield path, text_field(function[key], path)


def part_fields(part: dict[str, Any], where: Path, view: InputView) -> Iterator[tuple[Path, str]]:
    if not isinstance(part, dict):  # validated for chat; a Responses item's parts are not
        param = dotted(where)
        raise BadRequest(f"invalid request: {param}: a content part must be an object", param=param)
    kind = part.get("type")
    if not isinstance(kind, str):
        kind = None  # vLLM then infers the type from the part's keys, as below
    media = [MEDIA_PARTS[key] for key in part if key in MEDIA_PARTS]
    if kind in MEDIA_PARTS:
        media.insert(0, MEDIA_PARTS[kind])
    if media:
        view.uncheckable.append(Uncheckable(media[0], dotted(where)))
        return
    if kind not in TEXT_PARTS:
        view.uncheckable.append(Uncheckable("other", dotted(where)))
        return
    key = TEXT_PARTS[kind]
    yield (*where, key), text_field(part.get(key), (*where, key))


def strings(node: Any, where: Path) -> Iterator[tuple[Path, str]]:
    """Every string value under ``node`` (a tool's name, descriptions, enums...)."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, (*where, index))


def text_field(value: Any, path: Path) -> str:
    if isinstance(value, str):
        return value
    param = dotted(path)
    raise BadRequest(f"invalid request: {param}: must be a string, not {json_type(value)}", param=param)


def _clip(spans: Sequence[Span], start: int, length: int) -> list[Span]:
    """The spans that fall in ``[start, start + length)``, relative to ``start``."""
    end = start + length
    return [
        Span(max(span.start, start) - start, min(span.end, end) - start, span.label)
        for span in spans
        if span.start < end and span.end > start
    ]


def _get(body: Any, path: Path) -> Any:
    for key in path:
        body = body[key]
    return body


def _set(body: Any, path: Path, value: str) -> None:
    _get(body, path[:-1])[path[-1]] = value


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def dotted(path: Path) -> str:
    return ".".join(str(key) for key in path)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
