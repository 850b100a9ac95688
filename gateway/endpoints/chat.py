"""``POST /v1/chat/completions``: messages in, a choice's ``message`` (streamed: its
``delta``) out, with content, refusal, reasoning and tool calls; chunks end with ``[DONE]``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as ModelField

from gateway.answer import Field, ProtocolViolation, dict_or_none, str_or_none, tool_calls
from gateway.endpoints.base import Endpoint
from gateway.endpoints.choices import RAW_STREAM, ChoiceFormat, ChoiceOutput
from gateway.input_text import InputView, as_list, message_fields, new_view, strings


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = ModelField(min_length=1)
    messages: list[ChatMessage] = ModelField(min_length=1)
    stream: bool = False


def read_chat(body: dict[str, Any], *, check_tools: bool) -> InputView:
    """A chat request: one text per message, per tool definition (``check_tools``), per
    document; BadRequest for a text field that is not a string."""
    view = new_view(body)
    for index, message in enumerate(body["messages"]):
        view.add(list(message_fields(message, ("messages", index), view)))
    if check_tools:
        for index, tool in enumerate(as_list(body.get("tools"))):
            # The function (name, description, parameter schema) is what the chat
            # template renders; the tool's ``type`` is not worth a monitor's time.
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
                view.add(list(strings(tool["function"], ("tools", index, "function"))))
            else:
                view.add(list(strings(tool, ("tools", index))))
    for index, document in enumerate(as_list(body.get("documents"))):
        view.add(list(strings(document, ("documents", index))))
    return view


_TEXT_KEYS = ("content", "refusal", "reasoning_content", "reasoning")
# What a ProtocolViolation names: the holder ("delta" or "message"), or a text's key.
_WHERE = {"delta": "choice.delta", "message": "choice.message"} | {key: f"message.{key}" for key in _TEXT_KEYS}


def _holder_name(streamed: bool) -> str:
    return "delta" if streamed else "message"


class ChatFormat(ChoiceFormat):
    logprob_key = "content"

    def texts(self, choice: dict, *, streamed: bool) -> list[Field]:
        name = _holder_name(streamed)
        holder = dict_or_none(choice.get(name), _WHERE[name])
        if holder is None:
            return []
        # Called at every token of a stream: one pass, the error labels made beforehand.
        fields: list[Field] = []
        for key in _TEXT_KEYS:
            text = holder.get(key)
            if text is not None and text != "":
                fields.append((key, str_or_none(text, _WHERE[key])))  # a wrong type raises
        if "tool_calls" not in holder:  # a token's delta: skip the generator
            return fields
        for position, _call, function in tool_calls(holder):
            for part in ("name", "arguments"):
                text = str_or_none(function.get(part), f"tool_calls.{part}")
                if text:
                    fields.append((f"tool_calls.{position}.{part}", text))
        return fields

    def set_field(self, choice: dict, key: str, text: str, *, streamed: bool) -> None:
        if key == "logprobs":
            raise ValueError("logprobs are rewritten with redact_logprobs")
        holder = choice.setdefault(_holder_name(streamed), {})
        if key.startswith("tool_calls."):
            _, position, part = key.split(".")
            for found, _call, function in tool_calls(holder):
                if found == int(position):
                    function[part] = text
            return
        holder[key] = text

    def token(self, entry: Any) -> str:
        if not isinstance(entry, dict):
            raise ProtocolViolation("a logprobs entry is not an object")
        return str_or_none(entry.get("token"), "logprobs.token") or ""

    def mask_entry(self, logprobs: dict, at: int, text: str) -> None:
        entry = logprobs["content"][at]
        entry["token"] = text
        entry["bytes"] = list(text.encode()) if text else []
        if "top_logprobs" in entry:
            entry["top_logprobs"] = []

    def clear(self, choice: dict, refusal: str, *, streamed: bool) -> None:
        name = _holder_name(streamed)
        holder = choice.get(name) if isinstance(choice.get(name), dict) else {}
        role = holder.get("role", "assistant")
        choice[name] = {"role": role, "content": refusal} if not streamed or refusal else {}
        if choice.get("logprobs") is not None:
            choice["logprobs"] = None
        choice["finish_reason"] = "content_filter"

    def drop_once_fields(self, choice: dict) -> None:
        """The role, a tool call's id and type."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        delta.pop("role", None)
        for call in delta.get("tool_calls") or ():
            call.pop("id", None)
            call.pop("type", None)

    def blocked_choice(self, index: int) -> dict[str, Any]:
        return {"index": index, "finish_reason": "content_filter", "logprobs": None, "delta": {}}


CHAT = Endpoint(
    name="chat",
    path="/v1/chat/completions",
    request_model=ChatRequest,
    input_param="messages",
    read_input=read_chat,
    output=ChoiceOutput(ChatFormat()),
    raw=RAW_STREAM,
)
