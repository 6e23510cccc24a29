from __future__ import annotations

from pathlib import Path

import orjson

from c50k.items.demo import demo_post
from c50k.items.seeding import seed_store
from c50k.settings import Settings, StoreSettings
from c50k.store.sqlite import SqliteStore


async def test_seed_writes_demo_items_once(tmp_path: Path) -> None:
    settings = Settings(store=StoreSettings(sqlite_path=tmp_path / "items.sqlite3"))
    assert await seed_store(settings, 5, only_if_empty=True) == 5
    assert await seed_store(settings, 5, only_if_empty=True) == 0
    store = SqliteStore(settings.store.sqlite_path)
    await store.open()
    try:
        assert orjson.loads(await store.get(3) or b"null") == demo_post(3)
        assert await store.get(6) is None
    finally:
        await store.close()
