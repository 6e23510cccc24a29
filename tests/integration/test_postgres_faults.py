"""The PostgreSQL tier under faults, against real clusters: one shard (a primary and two
streaming replicas) started with the stack's code, broken on purpose by each test and made
whole again before the next one."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from c50k.api.app import create_app
from c50k.settings import CacheSettings, Settings, StoreSettings
from c50k.stack.postgres import cluster_of
from c50k.stack.stack import StackPlan, temporary_stack
from c50k.stack.state import ServiceRecord, StackState
from c50k.store.consistency import HEADER
from c50k.store.postgres import PostgresStore
from tests.conftest import empty_shards, postgres_settings
from tests.waiting import eventually

WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def stack() -> Iterator[StackState]:
    with temporary_stack(StackPlan(shards=1, replicas=2)) as state:
        yield state


@pytest.fixture
async def shard(stack: StackState) -> StackState:
    """The stack with every server running again, no item, and replay running."""
    for record in list(stack.services):
        if not record.running():
            restart(stack, record)
    settings = postgres_settings(stack)
    await empty_shards(settings)
    for dsn in settings.shards[0].replicas:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_wal_replay_resume()")
        finally:
            await conn.close()
    return stack


def app_settings(state: StackState) -> Settings:
    return Settings(
        store=StoreSettings(backend="postgres"),
        # Every read reaches the store: these tests are about where reads go.
        cache=CacheSettings(enabled=False),
        postgres=postgres_settings(
            state, health_interval_seconds=0.1, pool_timeout_seconds=1.0, pool_size=5
        ),
    )


@pytest.fixture
def app(shard: StackState) -> FastAPI:
    return create_app(app_settings(shard))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


def store_of(app: FastAPI) -> PostgresStore:
    store = app.state.services.store
    assert isinstance(store, PostgresStore)
    return store


def kill(record: ServiceRecord) -> None:
    os.kill(record.pid, signal.SIGKILL)  # A crash: no shutdown checkpoint, no goodbye.
    record.stop()  # Reaps it.


def restart(state: StackState, record: ServiceRecord) -> ServiceRecord:
    fresh = cluster_of(record).start()
    state.services[state.services.index(record)] = fresh
    state.save()
    return fresh


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually(condition, what, WAIT_SECONDS)


async def put(client: httpx.AsyncClient, item_id: int, version: int) -> httpx.Response:
    return await client.put(f"/items/{item_id}", json={"version": version})


def main_item(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    return orjson.loads(response.content)["main_item"]


async def test_primary_down_reads_go_on_writes_get_503_and_no_answered_write_is_lost(
    shard: StackState, client: httpx.AsyncClient
) -> None:
    written = [i for i in range(1, 41) if (await put(client, i, 1)).status_code == 200]
    assert written == list(range(1, 41))
    primary = shard.named("pg-0-primary")
    kill(primary)

    # Reads of the shard keep coming from its replicas once they have replayed everything.
    async def replicas_serve() -> bool:
        response = await client.get("/items/40")
        return response.status_code == 200 and main_item(response) == {"id": 40, "version": 1}

    await until(replicas_serve, "the replicas serve the written items")
    for item_id in written:
        assert main_item(await client.get(f"/items/{item_id}")) == {"id": item_id, "version": 1}

    # A worker that starts meanwhile (a restart, a new instance) starts, and serves reads.
    late = create_app(app_settings(shard))
    async with late.router.lifespan_context(late):
        transport = httpx.ASGITransport(app=late)
        async with httpx.AsyncClient(transport=transport, base_url="http://late") as second:

            async def late_worker_serves() -> bool:
                response = await second.get("/items/3")
                return response.status_code == 200 and main_item(response) == {
                    "id": 3,
                    "version": 1,
                }

            await until(late_worker_serves, "a worker started without the primary serves")

    refused = await put(client, 7, 2)
    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    assert "detail" in refused.json()

    restart(shard, primary)
    conn = await asyncpg.connect(postgres_settings(shard).shards[0].primary)
    try:
        rows = await conn.fetch("SELECT id, body FROM items ORDER BY id")
    finally:
        await conn.close()
    assert [r["id"] for r in rows] == written  # Every write answered 200 survived the crash.
    assert orjson.loads(rows[6]["body"]) == {"id": 7, "version": 1}  # The refused one did not land.

    async def writes_again() -> bool:
        return (await put(client, 7, 3)).status_code == 200

    await until(writes_again, "writes succeed after the primary is back")


async def test_replica_down_moves_its_reads_with_no_failed_request(
    shard: StackState, app: FastAPI, client: httpx.AsyncClient
) -> None:
    for item_id in range(1, 21):
        assert (await put(client, item_id, 1)).status_code == 200
    store = store_of(app)

    def replica_reads() -> int:
        return sum(n for (_shard, role), n in store.stats.reads.items() if role == "replica")

    async def both_replicas_serve() -> bool:
        # Healthy, and caught up with this worker's writes: reads of them go to replicas.
        healthy = sum(r.health.healthy for r in store.replicas()) == 2
        before = replica_reads()
        assert (await client.get("/items/1")).status_code == 200
        return healthy and replica_reads() > before

    await until(both_replicas_serve, "both replicas healthy and serving reads")
    statuses: Counter[int] = Counter()
    complete: Counter[str] = Counter()

    async def reader(worker: int) -> None:
        for n in range(60):
            response = await client.get(f"/items/{1 + (worker * 7 + n) % 19}")
            statuses[response.status_code] += 1
            complete[response.headers["x-items-complete"]] += 1

    load = asyncio.gather(*(reader(w) for w in range(8)))
    await eventually(lambda: statuses.total() >= 40, "reads under way")
    kill(shard.named("pg-0-replica-1"))
    await load
    assert statuses == {200: 480}
    assert complete == {"true": 480}


async def test_a_lagging_replica_never_hides_the_clients_own_write(
    shard: StackState, client: httpx.AsyncClient
) -> None:
    assert (await put(client, 5, 1)).status_code == 200
    settings = postgres_settings(shard)
    replicas = [await asyncpg.connect(dsn) for dsn in settings.shards[0].replicas]
    try:

        async def replayed_everywhere() -> bool:
            bodies = [await r.fetchval("SELECT body FROM items WHERE id = 5") for r in replicas]
            return all(b is not None for b in bodies)

        await until(replayed_everywhere, "both replicas have the first version")
        for replica in replicas:
            await replica.execute("SELECT pg_wal_replay_pause()")

        written = await put(client, 5, 2)
        assert written.status_code == 200
        token = written.headers[HEADER]
        for replica in replicas:  # The lag is real: the replicas still hold version 1.
            assert orjson.loads(await replica.fetchval("SELECT body FROM items WHERE id = 5")) == {
                "id": 5,
                "version": 1,
            }
        # The same worker, without a token, and another worker (a fresh app) with the token.
        assert main_item(await client.get("/items/5")) == {"id": 5, "version": 2}
        other = create_app(app_settings(shard))
        async with other.router.lifespan_context(other):
            transport = httpx.ASGITransport(app=other)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as second:
                for _ in range(20):  # Round robin would have reached every replica.
                    answer = await second.get("/items/5", headers={HEADER: token})
                    assert main_item(answer) == {"id": 5, "version": 2}
                bad = await second.get("/items/5", headers={HEADER: "not-a-token"})
                assert bad.status_code == 400
                assert "consistency token" in bad.json()["detail"]
    finally:
        for replica in replicas:
            await replica.execute("SELECT pg_wal_replay_resume()")
            await replica.close()


async def test_a_database_restarted_under_load_is_used_again_without_a_service_restart(
    shard: StackState, client: httpx.AsyncClient
) -> None:
    for item_id in range(1, 11):
        assert (await put(client, item_id, 1)).status_code == 200
    primary = shard.named("pg-0-primary")
    stop = asyncio.Event()
    statuses: Counter[int] = Counter()

    async def writer() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            n += 1
            statuses[(await put(client, 1 + n % 10, n)).status_code] += 1
            await asyncio.sleep(0.01)

    load = asyncio.create_task(writer())
    await eventually(lambda: statuses[200] >= 10, "writes under way")
    assert primary.stop()  # SIGINT: a fast shutdown, as an operator's restart does.
    restart(shard, primary)
    before = statuses.total()
    await eventually(lambda: statuses.total() >= before + 20, "writes go on after the restart")
    stop.set()
    await load
    assert set(statuses) <= {200, 503}  # While it was down: 503 with Retry-After, no 500.
    assert statuses[200] > 0
    for item_id in range(1, 11):  # The pool reconnected by itself.
        assert (await put(client, item_id, 99)).status_code == 200
        assert main_item(await client.get(f"/items/{item_id}")) == {"id": item_id, "version": 99}
