"""Choosing and opening the configured store."""

from __future__ import annotations

from c50k.settings import Settings
from c50k.store.base import ItemStore
from c50k.store.memory import MemoryStore
from c50k.store.sqlite import SqliteStore


def build_store(settings: Settings) -> ItemStore:
    if settings.store.backend == "memory":
        return MemoryStore()
    if settings.store.backend == "postgres":
        from c50k.store.postgres import PostgresStore  # noqa: PLC0415 -- asyncpg only when used.

        # Each worker opens its own pools: the budget check counts them all.
        return PostgresStore(settings.postgres, workers=settings.server.workers)
    return SqliteStore(settings.store.sqlite_path, settings.store.sqlite_busy_timeout_seconds)


async def open_store(settings: Settings) -> ItemStore:
    store = build_store(settings)
    await store.open()
    return store
