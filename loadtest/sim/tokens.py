"""A stand-in tokeniser: pure, fast, and lossless when tokens are joined back.

Real BPE vocabularies are not needed to load-test a gateway, but token boundaries
matter: output monitors see text arrive token by token, so a card number or an
API key should straddle several chunks as it would with a real model. Hence:
each token carries its leading whitespace (so ``"".join(tokens)`` restores the
text), digit runs split every three digits (as Llama 3 does) and long words
split every twelve letters.

Token ids (``/tokenize``, ``/detokenize``, token-id prompts) need no vocabulary file:
a token's id is its UTF-8 bytes read as one big-endian integer behind a 0x01 marker
byte. Ids are so the same on every replica and run, and ``decode(encode(t)) == t``;
unlike a real vocabulary's they are large (a 12-letter word is a 104-bit integer).
"""

from __future__ import annotations

import re

# Leading whitespace + one of: up to 3 digits, up to 12 letters/underscores, one other
# character. Trailing whitespace becomes a token of its own so nothing is lost.
_TOKEN = re.compile(r"\s*(?:\d{1,3}|[^\W\d]{1,12}|[^\w\s])|\s+")

# Chat templates wrap each message in role markers; Llama 3 spends about four tokens on it.
CHAT_TOKENS_PER_MESSAGE = 4


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word-ish tokens; ``"".join(tokenize(t)) == t`` always."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_chat_tokens(texts: list[str]) -> int:
    """Prompt tokens of a chat: every message's text plus its template overhead."""
    return sum(count_tokens(text) for text in texts) + CHAT_TOKENS_PER_MESSAGE * len(texts)


def encode(text: str) -> list[int]:
    """The token ids of ``text``."""
    return [int.from_bytes(b"\x01" + token.encode("utf-8"), "big") for token in tokenize(text)]


def decode(ids: list[int]) -> str:
    """The text of token ids; ValueError names the first id that is no token."""
    parts = []
    for token_id in ids:
        raw = token_id.to_bytes(max(1, (token_id.bit_length() + 7) // 8), "big") \
            if isinstance(token_id, int) and token_id > 0 else b""
        try:
            if raw[:1] != b"\x01" or len(raw) < 2:
                raise ValueError
            parts.append(raw[1:].decode("utf-8"))
        except ValueError:
            raise ValueError(f"token id {token_id!r} is out of vocabulary") from None
    return "".join(parts)
