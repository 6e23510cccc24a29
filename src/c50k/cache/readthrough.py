"""Read-through caching of items: memory first, then one shared load per key.

A write invalidates the key *and* detaches any load in flight for it, so a load that
started before the write can never put the old value back into the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from c50k.cache.memory import Entry, MemoryCache
from c50k.cache.singleflight import SingleFlight
from c50k.exceptions import ItemNotFound
from c50k.observability.metrics import CacheCounts
from c50k.store.base import ItemJson


class ReadThroughCache:
    def __init__(self, memory: MemoryCache, load: Callable[[int], Awaitable[ItemJson]]) -> None:
        self._memory = memory
        self._load = load
        self._flights: SingleFlight[int, Entry] = SingleFlight()
        # Plain ints: the metrics flush reads them (c50k_cache_*_total{level="memory"}).
        self.counts = CacheCounts("memory")

    def peek(self, item_id: int) -> Entry | None:
        """The cached entry, without waiting: the hot path answers from here. A miss here is
        followed by get(), which counts it."""
        entry = self._memory.get(item_id)
        if entry is not None:
            self.counts.hits += 1
        return entry

    async def get(self, item_id: int) -> ItemJson:
        entry = self._memory.get(item_id)
        if entry is None:
            self.counts.misses += 1
            entry = await self._flights.do(item_id, lambda: self._fill(item_id))
        else:
            self.counts.hits += 1
        if entry.body is None:
            raise ItemNotFound(item_id)
        return entry.body

    def invalidate(self, item_id: int) -> None:
        self._memory.delete(item_id)
        self._flights.forget(item_id)

    async def _fill(self, item_id: int) -> Entry:
        self.counts.loads += 1
        try:
            entry = Entry(await self._load(item_id))
        except ItemNotFound:
            entry = Entry(None)
        # Errors (upstream down, store busy) are not cached: the next request tries again.
        if self._flights.is_current(item_id, asyncio.current_task()):
            self._memory.set(item_id, entry)
        return entry
