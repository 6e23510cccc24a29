"""Where an item comes from, in order: the item store, then the upstream API (if configured)."""

from __future__ import annotations

from c50k.exceptions import ItemNotFound
from c50k.types import ItemJson, Reads, Upstream


class SourceChain:
    def __init__(self, store: Reads, upstream: Upstream | None) -> None:
        self._store = store
        self._upstream = upstream

    async def load(self, item_id: int) -> ItemJson:
        body = await self._store.get(item_id)
        if body is not None:
            return body
        if self._upstream is None:
            raise ItemNotFound(item_id)
        return await self._upstream.fetch(item_id)
