"""Every ItemStore keeps the same contract; each implementation runs the same tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from c50k.exceptions import StoreUnavailable
from c50k.stack.state import StackState
from c50k.store.base import ItemStore
from c50k.store.memory import MemoryStore
from c50k.store.postgres import ConnectionBudgetError, PostgresStore
from c50k.store.sqlite import SqliteStore
from tests.conftest import empty_shards, postgres_settings
from tests.waiting import eventually


@pytest.fixture(params=["memory", "sqlite", "postgres", "pgbouncer"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ItemStore]:
    opened: ItemStore
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = SqliteStore(tmp_path / "items.sqlite3")
    else:  # Two shards with replicas; or one primary behind PgBouncer in transaction mode.
        # A slow machine must not turn a wait for a pooled connection into a failed write.
        stack = request.getfixturevalue(f"{request.param}_stack")
        settings = postgres_settings(stack, pool_timeout_seconds=30.0)
        await empty_shards(settings)
        opened = PostgresStore(settings)
    await opened.open()
    yield opened
    await opened.close()


async def test_get_of_missing_item_is_none(store: ItemStore) -> None:
    assert await store.get(1) is None


async def test_put_get_replace(store: ItemStore) -> None:
    await store.put(1, b'{"id":1,"v":1}')
    assert await store.get(1) == b'{"id":1,"v":1}'
    await store.put(1, b'{"id":1,"v":2}')
    assert await store.get(1) == b'{"id":1,"v":2}'


async def test_delete(store: ItemStore) -> None:
    await store.put(1, b'{"id":1}')
    assert await store.delete(1) is True
    assert await store.delete(1) is False
    assert await store.get(1) is None


async def test_extreme_ids(store: ItemStore) -> None:
    largest = 2**63 - 1
    await store.put(0, b'{"id":0}')
    await store.put(largest, b'{"id":9223372036854775807}')
    assert await store.get(largest) == b'{"id":9223372036854775807}'
    page = await store.page(-1, 10)
    assert [i.item_id for i in page.items] == [0, largest]


async def test_paging_in_id_order_with_cursor(store: ItemStore) -> None:
    for item_id in [5, 1, 9, 3, 7]:
        await store.put(item_id, b'{"id":%d}' % item_id)
    first = await store.page(-1, 2)
    assert [i.item_id for i in first.items] == [1, 3]
    assert first.next_after == 3
    second = await store.page(3, 2)
    assert [i.item_id for i in second.items] == [5, 7]
    third = await store.page(7, 2)
    assert [i.item_id for i in third.items] == [9]
    assert third.next_after is None
    exact = await store.page(-1, 5)
    assert exact.next_after is None  # Exactly `limit` items left: no empty last page.


async def test_concurrent_writes_all_land(store: ItemStore) -> None:
    await asyncio.gather(*(store.put(i, b'{"id":%d}' % i) for i in range(200)))
    page = await store.page(-1, 1000)
    assert [i.item_id for i in page.items] == list(range(200))


async def test_check_passes_on_an_open_store(store: ItemStore) -> None:
    await store.check()


async def test_sqlite_survives_reopen_and_is_shared_between_connections(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    writer, reader = SqliteStore(path), SqliteStore(path)
    await writer.open()
    await reader.open()
    await writer.put(1, b'{"id":1}')
    assert await reader.get(1) == b'{"id":1}'  # Another worker's connection sees the commit.
    await writer.close()
    await reader.close()
    reopened = SqliteStore(path)
    await reopened.open()
    assert await reopened.get(1) == b'{"id":1}'
    await reopened.close()


async def test_sqlite_that_cannot_open_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await SqliteStore(blocker / "items.sqlite3").open()


async def test_closed_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "items.sqlite3")
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.get(1)


async def test_a_failed_write_never_undoes_another_writers_write(tmp_path: Path) -> None:
    """Writers share the worker's connection: one's rollback must not cancel another's write."""
    import sqlite3  # noqa: PLC0415 -- only this test holds a lock from outside.

    path = tmp_path / "items.sqlite3"
    store = SqliteStore(path, busy_timeout_seconds=0.2)
    await store.open()
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # Another process holds the write lock.

    puts = [asyncio.ensure_future(store.put(i, b'{"id":%d}' % i)) for i in (1, 2, 3)]

    async def release_once_one_gives_up() -> None:
        # The first writer waited its busy timeout out; the next one waits now.
        await eventually(lambda: any(put.done() for put in puts), "a writer gave up")
        blocker.rollback()

    outcomes = await asyncio.gather(*puts, release_once_one_gives_up(), return_exceptions=True)
    try:
        for item_id, outcome in zip((1, 2, 3), outcomes, strict=False):
            if outcome is None:  # Answered as written: it must be there.
                assert await store.get(item_id) == b'{"id":%d}' % item_id
            else:
                assert isinstance(outcome, StoreUnavailable)
        assert any(o is None for o in outcomes[:3])  # The lock was released in time for some.
    finally:
        blocker.close()
        await store.close()


async def test_postgres_refuses_a_fleet_that_would_exceed_max_connections(
    postgres_stack: StackState,
) -> None:
    settings = postgres_settings(postgres_stack, pool_size=100, max_overflow=20)
    store = PostgresStore(settings, workers=4)
    with pytest.raises(ConnectionBudgetError) as raised:
        await store.open()
    message = str(raised.value)
    # Names the server and every number, so the operator knows what to change.
    assert "shard 0 primary" in message
    assert "max_connections 300 - 3 reserved" in message
    assert "4 workers x (pool_size 100 + max_overflow 20) = 480" in message
