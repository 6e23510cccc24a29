"""Choosing and opening the configured store."""

from __future__ import annotations

from c50k.settings import StoreSettings
from c50k.store.base import ItemStore
from c50k.store.memory import MemoryStore
from c50k.store.sqlite import SqliteStore


def build_store(settings: StoreSettings) -> ItemStore:
    if settings.backend == "memory":
        return MemoryStore()
    return SqliteStore(settings.sqlite_path, settings.sqlite_busy_timeout_seconds)


async def open_store(settings: StoreSettings) -> ItemStore:
    store = build_store(settings)
    await store.open()
    return store
