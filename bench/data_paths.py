"""What one read and one write of an item cost through each candidate data path, side by side.

One process on uvloop, 64 statements in flight, over ids 1..1000 of a seeded items table; each
variant runs in turn, the rounds interleaved, and reports statements per second and the client
CPU per statement. The server's own CPU is not in these figures (docs/data-tier.md).

    c50k stack up --shards 1 --replicas 0 --no-redis --state-dir var/paths
    .venv/bin/python bench/data_paths.py postgresql://postgres@127.0.0.1:PORT/c50k --rounds 2

Reads: SQLAlchemy's AsyncConnection with and without pool_pre_ping (c50k before), SQLAlchemy's
pool handing out the raw asyncpg connection, asyncpg's pool as it comes (`pool.fetchval`: a
reset query after each statement) and without the reset (c50k now). Writes: SQLAlchemy as
before (BEGIN, upsert, COMMIT, then the WAL position), the same on asyncpg, an autocommit
upsert then the WAL position, and one CALL of the procedure that does all of it (c50k now).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from c50k.items.demo import demo_post
from c50k.store.migrate import engine_url

IN_FLIGHT = 64
POOL_SIZE, MAX_OVERFLOW = 10, 5  # c50k's defaults.
GET = "SELECT body FROM items WHERE id = $1"
UPSERT = (
    "INSERT INTO items (id, body) VALUES ($1, $2) "
    "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
)
SA_GET = text("SELECT body FROM items WHERE id = :id")
SA_UPSERT = text(
    "INSERT INTO items (id, body) VALUES (:id, :body) "
    "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
)
SA_LSN = text("SELECT pg_current_wal_lsn()::text")
Operation = Callable[[int], Awaitable[Any]]


async def measure(name: str, operation: Operation, count: int) -> None:
    for item_id in range(1, 201):  # Warm: connections open, statements prepared.
        await operation(item_id)
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> None:
        async with gate:
            await operation(n % 1000 + 1)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name:<52} {count / wall:>8,.0f}/s {1e6 * cpu / count:>6.0f} µs CPU", flush=True)


async def keep_session(_connection: Any) -> None:
    pass


def sqlalchemy_read(engine: AsyncEngine) -> Operation:
    async def read(item_id: int) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(SA_GET, {"id": item_id})).scalar()

    return read


def sqlalchemy_raw_read(engine: AsyncEngine) -> Operation:
    async def read(item_id: int) -> Any:
        raw = await engine.raw_connection()
        try:
            return await raw.driver_connection.fetchval(GET, item_id)  # type: ignore[union-attr]
        finally:
            raw.close()  # Back to the pool, no await: no greenlet needed unless it closes.

    return read


def sqlalchemy_write(engine: AsyncEngine) -> Operation:
    async def write(item_id: int) -> Any:
        async with engine.connect() as conn:
            async with conn.begin():
                await conn.execute(SA_UPSERT, {"id": item_id, "body": f'{{"id":{item_id}}}'})
            return (await conn.execute(SA_LSN)).scalar_one()

    return write


def asyncpg_writes(pool: Any) -> dict[str, Operation]:
    async def in_transaction(item_id: int) -> Any:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(UPSERT, item_id, f'{{"id":{item_id}}}')
            return await conn.fetchval("SELECT pg_current_wal_lsn()")

    async def autocommit(item_id: int) -> Any:
        async with pool.acquire() as conn:
            await conn.execute(UPSERT, item_id, f'{{"id":{item_id}}}')
            return await conn.fetchval("SELECT pg_current_wal_lsn()")

    async def procedure(item_id: int) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchval("CALL c50k_put_item($1, $2)", item_id, f'{{"id":{item_id}}}')

    return {
        "write: asyncpg, BEGIN + upsert + COMMIT, then LSN (4)": in_transaction,
        "write: asyncpg, autocommit upsert, then LSN (2)": autocommit,
        "write: asyncpg, one CALL (1) (c50k now)": procedure,
    }


async def main(dsn: str, rounds: int, count: int) -> None:
    seed = await asyncpg.connect(dsn)
    try:
        await seed.execute("TRUNCATE items")
        rows = [(i, orjson.dumps(demo_post(i)).decode()) for i in range(1, 1002)]
        await seed.copy_records_to_table("items", records=rows, columns=["id", "body"])
    finally:
        await seed.close()
    options = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    pinged = create_async_engine(engine_url(dsn), pool_pre_ping=True, **options)
    unpinged = create_async_engine(engine_url(dsn), pool_pre_ping=False, **options)
    # All 15 connections kept: closing an overflow one outside a greenlet fails (MissingGreenlet).
    raw = create_async_engine(engine_url(dsn), pool_size=POOL_SIZE + MAX_OVERFLOW, max_overflow=0)
    sizes = {"min_size": 0, "max_size": POOL_SIZE + MAX_OVERFLOW}
    plain = await asyncpg.create_pool(dsn, **sizes)
    kept = await asyncpg.create_pool(dsn, reset=keep_session, **sizes)

    async def kept_read(item_id: int) -> Any:
        async with kept.acquire() as conn:
            return await conn.fetchval(GET, item_id)

    reads: dict[str, Operation] = {
        "read: SQLAlchemy, pool_pre_ping (c50k before)": sqlalchemy_read(pinged),
        "read: SQLAlchemy, no pre-ping": sqlalchemy_read(unpinged),
        "read: SQLAlchemy pool, raw asyncpg connection": sqlalchemy_raw_read(raw),
        "read: asyncpg pool.fetchval (reset query)": lambda i: plain.fetchval(GET, i),
        "read: asyncpg pool, no reset query (c50k now)": kept_read,
    }
    writes = {"write: SQLAlchemy, 9 round trips (c50k before)": sqlalchemy_write(pinged)}
    writes |= asyncpg_writes(kept)
    try:
        for number in range(1, rounds + 1):
            print(f"round {number}")
            for name, operation in reads.items():
                await measure(name, operation, count)
            for name, operation in writes.items():
                await measure(name, operation, count // 4)
    finally:
        await plain.close()
        await kept.close()
        await pinged.dispose()
        await unpinged.dispose()
        await raw.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="A migrated primary: postgresql://user@host:port/db")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=20_000, help="Reads per variant.")
    arguments = parser.parse_args()
    uvloop.run(main(arguments.dsn, arguments.rounds, arguments.count))
