"""A store in the worker's own memory: the fake for tests and the no-I/O store of benchmarks.

Not durable and not shared between workers; `C50K_STORE_BACKEND=memory` says so in its name.
"""

from __future__ import annotations

import bisect

from c50k.store.base import Page, StoredItem, page_of
from c50k.types import ItemJson


class MemoryStore:
    name = "memory"

    def __init__(self) -> None:
        self._items: dict[int, ItemJson] = {}
        self._ids: list[int] = []  # Sorted, for paging.

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
        self._ids.clear()

    async def get(self, item_id: int) -> ItemJson | None:
        return self._items.get(item_id)

    async def put(self, item_id: int, body: ItemJson) -> None:
        if item_id not in self._items:
            bisect.insort(self._ids, item_id)
        self._items[item_id] = body

    async def delete(self, item_id: int) -> bool:
        if self._items.pop(item_id, None) is None:
            return False
        del self._ids[bisect.bisect_left(self._ids, item_id)]
        return True

    async def page(self, after: int, limit: int) -> Page:
        start = bisect.bisect_right(self._ids, after)
        ids = self._ids[start : start + limit + 1]
        return page_of([StoredItem(i, self._items[i]) for i in ids], limit)

    async def check(self) -> None:
        return None
