"""A stand-in tokeniser: pure, fast, and lossless when tokens are joined back.

Real BPE vocabularies are not needed to load-test a gateway, but token boundaries
matter: output monitors see text arrive token by token, so a card number or an
API key should straddle several chunks as it would with a real model. Hence:
each token carries its leading whitespace (so ``"".join(tokens)`` restores the
text), digit runs split every three digits (as Llama 3 does) and long words
split every twelve letters.

Token ids (``/tokenize``, ``/detokenize``, token-id prompts) need no vocabulary file:
an id is up to seven UTF-8 bytes of a token read as one big-endian integer behind a
0x01 marker byte (so below 2**57: JSON and int64 safe). Ids are the same on every
replica and run, and ``decode(encode(t)) == t``. A token longer than seven bytes takes
several ids, so ``len(encode(t))`` can exceed ``count_tokens(t)`` for long words.
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


ID_BYTES = 7


def encode(text: str) -> list[int]:
    """The token ids of ``text``."""
    ids = []
    for token in tokenize(text):
        raw = token.encode("utf-8")
        ids.extend(int.from_bytes(b"\x01" + raw[i : i + ID_BYTES], "big") for i in range(0, len(raw), ID_BYTES))
    return ids


def decode(ids: list[int]) -> str:
    """The text of token ids; ValueError names the first id that is no token."""
    raw = bytearray()
    for token_id in ids:
        size = (token_id.bit_length() + 7) // 8 if isinstance(token_id, int) else 0
        piece = token_id.to_bytes(size, "big") if 2 <= size <= ID_BYTES + 1 else b""
        if piece[:1] != b"\x01":
            raise ValueError(f"token id {token_id!r} is out of vocabulary")
        raw += piece[1:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("token ids do not decode to UTF-8 text") from None
