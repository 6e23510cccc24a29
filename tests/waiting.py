"""Waiting on conditions, never on time: poll until something holds, and fail naming what
was awaited once a generous bound has passed. The bound only ends a broken run; a passing run
waits exactly as long as the condition takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.02
WAIT_SECONDS = 15.0


def _failure(what: str, within: float, detail: Callable[[], str] | None) -> AssertionError:
    return AssertionError(f"not {what} within {within} s" + (f":\n{detail()}" if detail else ""))


def wait_until(
    condition: Callable[[], bool],
    what: str,
    within: float = WAIT_SECONDS,
    detail: Callable[[], str] | None = None,
) -> float:
    """Poll `condition()` until it holds; the monotonic time it first did."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise _failure(what, within, detail)
        time.sleep(POLL_SECONDS)
    return time.monotonic()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    within: float = WAIT_SECONDS,
    detail: Callable[[], str] | None = None,
) -> float:
    """`wait_until` for a test on the event loop: the loop runs between polls, and the
    condition may be a coroutine (a probe that acts, then looks)."""
    deadline = time.monotonic() + within
    while True:
        held = condition()
        if held if isinstance(held, bool) else await held:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise _failure(what, within, detail)
        await asyncio.sleep(POLL_SECONDS)
