"""Fakes with the same interface as the real tiers, for tests without I/O."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from c50k.exceptions import ItemNotFound
from c50k.types import ItemJson


def item(item_id: int, source: str) -> ItemJson:
    return orjson.dumps({"id": item_id, "source": source})


class FakeUpstream:
    """Answers every id in `items`, raises `errors[id]`, and counts calls. With a `gate`, every
    call waits until the test opens it: a slow upstream whose answer the test releases."""

    def __init__(
        self,
        items: set[int] | None = None,
        errors: dict[int, Exception] | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.items = items or set()
        self.errors = errors or {}
        self.gate = gate
        self.calls: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    async def fetch(self, item_id: int) -> ItemJson:
        self.calls[item_id] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if item_id in self.errors:
                raise self.errors[item_id]
            if item_id not in self.items:
                raise ItemNotFound(item_id)
            return item(item_id, "upstream")
        finally:
            self.in_flight -= 1


class Clock:
    """A timer that moves only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
