"""What the simulated model says: the output modes ``echo``, ``corpus`` and ``random``.

Each source turns a request into the full list of output tokens up front (cheap:
they are short strings), so the engine only counts steps and hands tokens out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from loadtest.sim.tokens import tokenize

OUTPUT_MODES = ("echo", "corpus", "random")

# Said when there is nothing to echo, so a request still gets at least one token.
FALLBACK_TEXT = "OK."

# Plain words for random mode; varied lengths so chunk sizes vary a little too.
RANDOM_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "model token batch stream latency request server engine queue cache window monitor "
    "river mountain garden kitchen window letter morning evening music painting harbour "
    "quickly slowly carefully brightly quietly simply gently really always never often"
).split()

# Natural output length range for random mode when ignore_eos is off.
RANDOM_NATURAL_TOKENS = (16, 256)


@dataclass(frozen=True)
class Output:
    """The tokens to stream, and whether running out of them is a natural stop (EOS)."""

    tokens: list[str]
    natural_stop: bool

    @property
    def finish_reason(self) -> str:
        return "stop" if self.natural_stop else "length"


class OutputSource(Protocol):
    def generate(self, prompt_text: str, max_tokens: int, ignore_eos: bool) -> Output: ...


def fit(tokens: list[str], max_tokens: int, ignore_eos: bool) -> Output:
    """Cut ``tokens`` to ``max_tokens``; with ``ignore_eos``, repeat them to fill it.

    Without ``ignore_eos`` the text's end is the model's end-of-sequence, which
    comes before ``max_tokens`` when the text is shorter.
    """
    if not tokens:
        tokens = tokenize(FALLBACK_TEXT)
    if len(tokens) >= max_tokens:
        return Output(tokens[:max_tokens], natural_stop=False)
    if not ignore_eos:
        return Output(tokens, natural_stop=True)
    # Repeats start with a space so the words of two copies do not run together.
    repeat = tokens if tokens[0][:1].isspace() else [" " + tokens[0], *tokens[1:]]
    out = list(tokens)
    while len(out) < max_tokens:
        out.extend(repeat[: max_tokens - len(out)])
    return Output(out, natural_stop=False)


class EchoSource:
    """Says the prompt back (the last user message for chat), so output monitors
    see exactly the text the load test chose."""

    def generate(self, prompt_text: str, max_tokens: int, ignore_eos: bool) -> Output:
        return fit(tokenize(prompt_text), max_tokens, ignore_eos)


class CorpusSource:
    """Says a text drawn (seeded) from a corpus, e.g. a labelled dataset."""

    def __init__(self, texts: Sequence[str], rng: random.Random) -> None:
        if not texts:
            raise ValueError("corpus output mode needs at least one text")
        # Tokenised once: the hot path then only slices lists.
        self._token_lists = [tokenize(text) for text in texts]
        self._rng = rng

    def generate(self, prompt_text: str, max_tokens: int, ignore_eos: bool) -> Output:
        return fit(self._rng.choice(self._token_lists), max_tokens, ignore_eos)


class RandomSource:
    """Says random words (seeded); its natural length is random too."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._tokens = [" " + word for word in RANDOM_WORDS]

    def generate(self, prompt_text: str, max_tokens: int, ignore_eos: bool) -> Output:
        length = max_tokens if ignore_eos else self._rng.randint(*RANDOM_NATURAL_TOKENS)
        tokens = self._rng.choices(self._tokens, k=min(length, max_tokens))
        return Output(tokens, natural_stop=length < max_tokens)
