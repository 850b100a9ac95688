"""Random numbers written as prose writes them, inside Faker-generated sentences of many shapes.

Shared by the profanity test (no number alone is profanity) and the measurement in its
note; nothing here is hand-picked: values, formats, sentences and positions are drawn.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from faker import Faker


def _formats(rng: random.Random) -> list[Callable[[int], str]]:
    return [
        str,
        lambda n: f"{n:,}",
        lambda n: f"{n / 100:.2f}",
        lambda n: f"{n % 10}.{n % 1000}.{n % 97}",  # a version
        lambda n: f"{n % 24:02d}:{n % 60:02d}",
        lambda n: f"{n % 1000}%",
        lambda n: f"${n:,}",
        lambda n: f"€{n}",
        lambda n: f"#{n}",
        lambda n: f"({n})",
        lambda n: f"-{n}",
        lambda n: f"{n}-{n + rng.randrange(1, 999)}",
        lambda n: f"{n % 28 + 1}/{n % 12 + 1}/{1950 + n % 75}",
        lambda n: f'"{n}"',
        lambda n: f"{n:05d}",
        lambda n: f"{n}.",
    ]


def _sentences(fake: Faker) -> list[Callable[[], str]]:
    return [
        fake.sentence,
        fake.catch_phrase,
        fake.bs,
        fake.job,
        fake.company,
        fake.street_address,
        lambda: fake.text(max_nb_chars=160),
        fake.paragraph,
        fake.city,
        fake.color_name,
    ]


def numbers_in_text(count: int, seed: int = 0, top: int = 100_000) -> Iterator[tuple[str, str]]:
    """``(number as written, text holding it)`` pairs; numbers uniform in [0, top)."""
    rng = random.Random(seed)
    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR", "es_ES"])
    fake.seed_instance(seed)
    formats = _formats(rng)
    shapes = _sentences(fake)
    for _ in range(count):
        number = rng.choice(formats)(rng.randrange(top))
        words = rng.choice(shapes)().split()
        at = rng.randint(0, len(words))
        yield number, " ".join([*words[:at], number, *words[at:]])
