"""Filling a store with demo items, for the quick start and for benchmarks."""

from __future__ import annotations

import orjson

from c50k.items.demo import demo_post
from c50k.settings import Settings
from c50k.store.factory import open_store


async def seed_store(settings: Settings, count: int, *, only_if_empty: bool) -> int:
    """Write demo items 1..count; returns how many were written."""
    store = await open_store(settings)
    try:
        if only_if_empty and (await store.page(-1, 1)).items:
            return 0
        for item_id in range(1, count + 1):
            await store.put(item_id, orjson.dumps(demo_post(item_id)))
        return count
    finally:
        await store.close()
