"""What one read or write of the PostgreSQL store costs on the wire, and how it rides over a
broken connection: through a counting proxy in front of a real primary (tests/integration/
pgwire.py), with one pooled connection so that every statement is prepared on it once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import pytest

from c50k.exceptions import StoreUnavailable
from c50k.settings import ShardSettings
from c50k.stack.state import StackState
from c50k.store import consistency
from c50k.store.postgres import PostgresStore
from tests.conftest import empty_shards, postgres_settings
from tests.integration.pgwire import CountingProxy, counting_proxy

BODY = b'{"id":1,"v":1}'


@pytest.fixture
async def proxy(postgres_stack: StackState) -> AsyncIterator[CountingProxy]:
    settings = postgres_settings(postgres_stack)
    await empty_shards(settings)
    async with counting_proxy(settings.shards[0].primary) as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def store_through(
    proxy: CountingProxy, stack: StackState, **changes: object
) -> AsyncIterator[PostgresStore]:
    """An open store whose one shard is the stack's first primary, through the proxy, with
    one pooled connection."""
    settings = postgres_settings(
        stack,
        pool_size=1,
        max_overflow=0,
        health_interval_seconds=3600.0,  # No health check runs between the counts.
        **changes,
    )
    store = PostgresStore(
        settings.model_copy(update={"shards": [ShardSettings(primary=proxy.dsn)]})
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def round_trips(proxy: CountingProxy, operation: Awaitable[object]) -> int:
    before = proxy.round_trips
    await operation
    return proxy.round_trips - before


async def test_a_read_and_a_write_each_take_one_round_trip(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    async with store_through(proxy, postgres_stack) as store:
        # The first of each prepares its statement on the connection: describe, then run.
        assert await round_trips(proxy, store.put(1, BODY)) == 2
        assert await round_trips(proxy, store.get(1)) == 2
        # From then on: no BEGIN, no COMMIT, no ping before, no reset after, and the
        # consistency token's LSN comes back with the write itself.
        assert await round_trips(proxy, store.put(1, b'{"id":1,"v":2}')) == 1
        token = consistency.last_write.get()
        assert token is not None
        assert token.lsn > 0
        assert await round_trips(proxy, store.get(1)) == 1
        assert await store.get(1) == b'{"id":1,"v":2}'
        await store.delete(1)
        assert await round_trips(proxy, store.delete(1)) == 1
        assert proxy.connections == 1


async def test_the_token_lsn_is_past_the_commit_record(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    """A replica that has replayed up to the token has the write: the token's LSN is at or
    after the end of the write's commit record, as the WAL itself shows (pg_walinspect)."""
    async with store_through(proxy, postgres_stack) as store:
        conn = await asyncpg.connect(postgres_settings(postgres_stack).shards[0].primary)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            start = await conn.fetchval("SELECT pg_current_wal_lsn()")
            for version in range(10):
                await store.put(7, b'{"id":7,"v":%d}' % version)
                token = consistency.last_write.get()
                assert token is not None
                commit_end = await conn.fetchval(
                    "SELECT end_lsn FROM pg_get_wal_records_info_till_end_of_wal($1) "
                    "WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' "
                    "AND xid::text = (SELECT xmin::text FROM items WHERE id = 7)",
                    start,
                )
                assert commit_end is not None
                assert commit_end <= token.lsn
        finally:
            await conn.close()


async def test_reads_share_one_query_while_every_connection_is_taken(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    async with store_through(proxy, postgres_stack) as store:
        for item_id in range(1, 41):
            await store.put(item_id, b'{"id":%d}' % item_id)
        for _ in range(2):  # The first time prepares both statements (and reads the array type).
            before = proxy.round_trips
            bodies = await asyncio.gather(*(store.get(item_id) for item_id in range(1, 51)))
            assert bodies == [b'{"id":%d}' % i if i <= 40 else None for i in range(1, 51)]
        # The first read took the one connection; the 49 behind it ran as one query.
        assert proxy.round_trips - before == 2
        before = proxy.round_trips
        bodies = await asyncio.gather(*(store.get(item_id) for item_id in range(1, 252)))
        assert bodies[:40] == [b'{"id":%d}' % i for i in range(1, 41)]
        assert proxy.round_trips - before == 1 + 3  # 250 behind the first: 100, 100, 50.


async def test_a_broken_connection_is_replaced_and_the_read_runs_again(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    async with store_through(proxy, postgres_stack) as store:
        await store.put(1, BODY)
        proxy.break_next_message = True  # The pooled connection dies under the next read.
        assert await store.get(1) == BODY
        assert proxy.connections == 2  # Once on a fresh connection, which answered.
        proxy.break_next_message = True
        await store.put(1, b'{"id":1,"v":2}')  # A PUT runs again too: it is idempotent.
        assert await store.get(1) == b'{"id":1,"v":2}'
        assert proxy.connections == 3


async def test_a_delete_cut_in_flight_is_not_run_twice(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    """A second run could answer "not found" for an item the first one deleted: the client
    gets 503 and decides."""
    async with store_through(proxy, postgres_stack) as store:
        await store.put(1, BODY)
        await store.delete(2)  # Prepared: the next DELETE is one message, cut on its way.
        proxy.break_next_message = True
        with pytest.raises(StoreUnavailable):
            await store.delete(1)
        assert await store.get(1) == BODY  # The cut message never reached the server.
        assert await store.delete(1) is True


async def test_behind_pgbouncer_each_statement_is_described_then_run(
    proxy: CountingProxy, postgres_stack: StackState
) -> None:
    """With no statement cache (PgBouncer in transaction mode), every statement is parsed
    unnamed and described (a Flush), then bound and run (a Sync): two round trips on one
    server link, no transaction around them."""
    async with store_through(proxy, postgres_stack, pgbouncer=True) as store:
        for _ in range(2):
            assert await round_trips(proxy, store.put(1, BODY)) == 2
            assert await round_trips(proxy, store.get(1)) == 2
