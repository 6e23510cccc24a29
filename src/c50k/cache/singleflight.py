"""Concurrent calls for one key share a single load (within one worker process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    async def do(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        # shield: a caller that gives up (deadline, disconnect) must not cancel the load the
        # other callers are waiting for.
        return await asyncio.shield(self.start(key, load))

    def start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        """The load for `key` in flight, started now if none is: callers that come while it
        runs join it."""
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def __contains__(self, key: K) -> bool:
        return key in self._calls

    def is_current(self, key: K, task: asyncio.Task[V] | None) -> bool:
        """True while `task` is still the load that callers for `key` join."""
        return task is not None and self._calls.get(key) is task

    def forget(self, key: K) -> None:
        """Let the next call for `key` start a new load; a running one finishes unshared."""
        self._calls.pop(key, None)

    def __len__(self) -> int:
        return len(self._calls)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            # Mark the exception retrieved: when every waiter gave up, nobody else will.
            task.exception()
