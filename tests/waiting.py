"""Waiting in tests on a condition, never on a guessed delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(condition: Callable[[], object], timeout_s: float = 5.0, what: str = "the condition") -> None:
    """Poll ``condition`` (it may be made true by another thread) until it holds; an
    AssertionError naming ``what`` once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(0.001)


async def started(awaitable: Awaitable[T]) -> asyncio.Task[T]:
    """A task running ``awaitable``, returned once it has run up to its first real wait
    (a step of a task runs on until it suspends), so what it does before waiting is done."""
    entered = asyncio.Event()

    async def run() -> T:
        entered.set()
        return await awaitable

    task = asyncio.create_task(run())
    await entered.wait()
    return task
