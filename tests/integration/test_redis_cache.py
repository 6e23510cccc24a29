"""The two-level cache against a real redis-server: each test's "workers" are caches built by
the app's own `open_cache`, sharing one Redis, as the processes of a fleet do.

Time: the in-process layers age on a clock the tests move by hand; Redis ages keys on its own
clock, so a test waits until Redis says a key is stale or gone, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
from redis import Redis

from c50k.api.app import create_app, open_cache
from c50k.cache.keys import KeySpace
from c50k.cache.readthrough import STALE_IF_ERROR, STALE_WHILE_REVALIDATE, ReadThroughCache
from c50k.exceptions import UpstreamUnavailable
from c50k.items.sources import SourceChain
from c50k.settings import CacheSettings, RedisSettings, Settings
from c50k.stack.redis import RedisServer
from c50k.store.memory import MemoryStore
from tests.unit.fakes import Clock, FakeUpstream
from tests.waiting import eventually

KEYS = KeySpace("c50k", 1)


@asynccontextmanager
async def fleet(
    server: RedisServer,
    sources: SourceChain,
    count: int = 2,
    cache: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    **redis: Any,
) -> AsyncIterator[list[ReadThroughCache]]:
    settings = Settings(
        cache=CacheSettings(**(cache or {})),
        redis=RedisSettings(url=server.url, **{"ttl_jitter": 0.0, **redis}),
    )
    async with AsyncExitStack() as stack:
        workers = []
        for _ in range(count):
            worker = open_cache(settings, sources.load, timer=clock)
            stack.push_async_callback(worker.close)
            workers.append(worker)
        await eventually(lambda: all(w.redis and w.redis.subscribed for w in workers), "subscribed")
        yield workers


def ttl_ms(server: RedisServer, item_id: int) -> int:
    """What Redis has left of an item's key: milliseconds, or -2 when the key is gone."""
    with Redis.from_url(server.url) as client:
        return int(client.pttl(KEYS.item(item_id)))


def gone(server: RedisServer, item_id: int) -> bool:
    return ttl_ms(server, item_id) == -2


def stale(server: RedisServer, item_id: int, stale_ms: int) -> bool:
    """Past its TTL, within the stale window written with it (envelope.py)."""
    return 0 <= ttl_ms(server, item_id) < stale_ms


def fresh(server: RedisServer, item_id: int, stale_ms: int) -> bool:
    return ttl_ms(server, item_id) > stale_ms


def upstream_chain(upstream: FakeUpstream, store: MemoryStore | None = None) -> SourceChain:
    return SourceChain(store or MemoryStore(), upstream)


async def test_hit_and_miss_on_each_level(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items={1})
    async with fleet(redis_server, upstream_chain(upstream)) as (first, second):
        assert orjson.loads(await first.get(1))["id"] == 1
        assert (first.stats.local_misses, first.stats.redis_misses, first.stats.loads) == (1, 1, 1)
        await first.get(1)
        assert first.stats.local_hits == 1

        await second.get(1)  # Another worker: from Redis, no load.
        assert (second.stats.redis_hits, second.stats.loads) == (1, 0)
        await second.get(1)
        assert second.stats.local_hits == 1
        assert upstream.calls[1] == 1


async def test_entries_expire_after_their_ttl(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items={1})
    timing = {"stale_while_revalidate_seconds": 0, "stale_if_error_seconds": 0}
    clock = Clock()
    async with fleet(
        redis_server, upstream_chain(upstream), 2, {"ttl_seconds": 0.3, **timing}, clock
    ) as (first, second):
        await first.get(1)
        clock.now = 0.1
        await second.get(1)  # Read from Redis 0.1 s later: its copy expires later.
        clock.now = 0.35  # Gone from first's in-process layer...
        await eventually(lambda: gone(redis_server, 1), "gone from Redis")  # ...and Redis.
        assert second.peek(1) is not None
        await first.get(1)
        assert (second.stats.redis_hits, upstream.calls[1]) == (1, 2)


async def test_not_found_is_cached_briefly_for_every_worker(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items=set())
    cache = {"negative_ttl_seconds": 0.4}
    clock = Clock()
    async with fleet(redis_server, upstream_chain(upstream), 2, cache, clock) as (first, second):
        assert (await first.lookup(5)).body is None
        assert (await second.lookup(5)).body is None
        assert (upstream.calls[5], second.stats.redis_hits) == (1, 1)
        upstream.items.add(5)
        clock.now = 0.5
        await eventually(lambda: gone(redis_server, 5), "gone from Redis")
        assert (await second.lookup(5)).body is not None
        assert upstream.calls[5] == 2


async def test_a_write_drops_the_item_from_every_worker(redis_server: RedisServer) -> None:
    store = MemoryStore()
    await store.put(1, b'{"id":1,"v":1}')
    # A long in-process TTL: only the invalidation message can drop the old value in time.
    async with fleet(redis_server, upstream_chain(FakeUpstream(), store), 3) as workers:
        for worker in workers:
            assert await worker.get(1) == b'{"id":1,"v":1}'
        await store.put(1, b'{"id":1,"v":2}')
        started = time.monotonic()
        await workers[0].invalidate(1)
        await eventually(lambda: all(w.peek(1) is None for w in workers), "dropped everywhere")
        assert time.monotonic() - started < 1.0  # The documented bound, generously.
        for worker in workers:
            assert await worker.get(1) == b'{"id":1,"v":2}'
        assert workers[2].stats.invalidations_received >= 1


async def test_a_load_begun_before_a_write_cannot_refill_redis(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items={1}, gate=asyncio.Event())
    async with fleet(redis_server, upstream_chain(upstream)) as (first, second):
        loading = asyncio.ensure_future(first.get(1))
        # first holds the lease and waits on the upstream.
        await eventually(lambda: upstream.in_flight == 1, "loading")
        await second.invalidate(1)
        assert upstream.gate is not None
        upstream.gate.set()
        await loading  # Its caller gets the value it loaded...
        with Redis.from_url(redis_server.url) as client:
            assert client.exists(KEYS.item(1), KEYS.lease(1)) == 0  # ...Redis does not.


async def test_concurrent_misses_load_once_across_workers(redis_server: RedisServer) -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream(items={9}, gate=gate)
    async with fleet(redis_server, upstream_chain(upstream), 4) as workers:
        reads = asyncio.gather(*(w.get(9) for w in workers for _ in range(50)))
        # The upstream answers once the three other workers wait on the lease holder's value.
        await eventually(lambda: sum(w.stats.lease_waits for w in workers) == 3, "waiting")
        gate.set()
        bodies = await reads
        assert len(set(bodies)) == 1
        assert upstream.calls[9] == 1
        assert sum(w.stats.lease_waits for w in workers) == 3
        assert sum(w.stats.lease_timeouts for w in workers) == 0


def stale_ms(windows: dict[str, float]) -> int:
    """The stale window written with a value: the longer of the two (Freshness.stale_ms)."""
    cache = CacheSettings.model_validate(windows)
    return round(1000 * max(cache.stale_while_revalidate_seconds, cache.stale_if_error_seconds))


@asynccontextmanager
async def past_its_ttl(
    server: RedisServer, upstream: FakeUpstream, **windows: float
) -> AsyncIterator[tuple[ReadThroughCache, bytes]]:
    """One worker, and item 1 as it loaded it, now past its TTL (0.3 s) in Redis and in the
    in-process layer."""
    clock = Clock()
    async with fleet(
        server, upstream_chain(upstream), 1, {"ttl_seconds": 0.3, **windows}, clock
    ) as (worker,):
        loaded = await worker.get(1)
        clock.now = 0.4
        await eventually(lambda: stale(server, 1, stale_ms(windows)), "stale in Redis")
        yield worker, loaded


async def test_stale_while_revalidate(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items={1})
    windows = {"stale_while_revalidate_seconds": 5.0}
    async with past_its_ttl(redis_server, upstream, **windows) as (worker, _loaded):
        entry = await worker.lookup(1)
        assert entry.stale == STALE_WHILE_REVALIDATE
        assert entry.body is not None
        # One refresh, in the background: it loads, then writes a fresh value to Redis.
        await eventually(lambda: upstream.calls[1] == 2, "refreshed")
        await eventually(lambda: fresh(redis_server, 1, stale_ms(windows)), "fresh in Redis")
        assert (await worker.lookup(1)).stale is None
        assert upstream.calls[1] == 2


async def test_stale_if_error(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items={1})
    windows = {"stale_while_revalidate_seconds": 0.0, "stale_if_error_seconds": 5.0}
    async with past_its_ttl(redis_server, upstream, **windows) as (worker, loaded):
        upstream.errors[1] = UpstreamUnavailable("http://127.0.0.1:1/posts/1", "down")
        entry = await worker.lookup(1)
        assert (entry.body, entry.stale) == (loaded, STALE_IF_ERROR)
        del upstream.errors[1]
        assert (await worker.lookup(1)).stale is None  # The failed load left no lease behind.
        assert upstream.calls[1] == 3


async def test_a_stalled_redis_costs_little_and_recovers(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items=set(range(1000)))
    async with fleet(
        redis_server,
        upstream_chain(upstream),
        1,
        local=False,  # Every read needs Redis.
        breaker_failures=2,
        breaker_open_seconds=0.3,
    ) as (worker,):
        await worker.get(1)
        redis_server.pause()
        try:
            slowest = 0.0
            for item_id in range(100, 140):
                started = time.monotonic()
                assert orjson.loads(await worker.get(item_id))["id"] == item_id
                slowest = max(slowest, time.monotonic() - started)
            # The documented bound (two commands' 50 ms socket timeouts per read), with the
            # slack a shared, loaded 2-core machine needs.
            assert slowest < 1.0
            assert worker.redis is not None
            assert worker.redis.breaker.state != "closed"
            assert worker.stats.redis_skipped > worker.stats.redis_errors
        finally:
            redis_server.resume()
        hits = worker.stats.redis_hits

        async def hit_again() -> bool:
            await worker.get(1)
            return worker.stats.redis_hits > hits

        await eventually(hit_again, "the cache back")


async def test_a_restarted_redis_is_used_again(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items=set(range(1000)))
    async with fleet(
        redis_server, upstream_chain(upstream), 1, local=False, breaker_open_seconds=0.2
    ) as (worker,):
        await worker.get(1)
        redis_server.kill()
        for item_id in range(100, 120):
            assert orjson.loads(await worker.get(item_id))["id"] == item_id
        redis_server.start()
        assert worker.redis is not None
        await eventually(lambda: worker.redis is not None and worker.redis.subscribed, "back")

        async def read_back() -> bool:  # A value written after the restart.
            await worker.get(2)
            return worker.stats.redis_hits > 0

        await eventually(read_back, "the cache back")
        assert worker.stats.subscription_resets >= 2


async def test_a_write_while_redis_stalls_is_invalidated_when_it_answers(
    redis_server: RedisServer,
) -> None:
    store = MemoryStore()
    await store.put(1, b'{"id":1,"v":1}')
    async with fleet(redis_server, upstream_chain(FakeUpstream(), store), 1, local=False) as (
        worker,
    ):
        assert await worker.get(1) == b'{"id":1,"v":1}'
        assert worker.redis is not None
        redis_server.pause()
        try:
            await store.put(1, b'{"id":1,"v":2}')
            await worker.invalidate(1)  # Times out: Redis keeps the old value for now.
            assert list(worker.redis.pending) == [1]
        finally:
            redis_server.resume()
        await worker.lookup(2)  # The next command that succeeds sends it again.
        await eventually(lambda: worker.redis is not None and not worker.redis.pending, "sent")
        assert await worker.get(1) == b'{"id":1,"v":2}'


async def test_a_silent_channel_clears_the_in_process_layer(redis_server: RedisServer) -> None:
    upstream = FakeUpstream(items=set(range(10)))
    clock = Clock()
    async with fleet(
        redis_server,
        upstream_chain(upstream),
        1,
        clock=clock,
        heartbeat_seconds=0.1,
        local_ttl_seconds=0.2,
    ) as (worker,):
        await worker.get(1)
        assert worker.peek(1) is not None
        redis_server.pause()  # Invalidations could not reach this worker now.
        try:
            await eventually(
                lambda: worker.redis is not None and not worker.redis.subscribed, "deaf"
            )
            assert worker.peek(1) is None  # Cleared after 3 silent beats.
            await worker.get(2)  # From the sources (Redis does not answer), cached briefly.
            assert worker.peek(2) is not None
            clock.now += 0.25
            assert worker.peek(2) is None
        finally:
            redis_server.resume()
        await eventually(lambda: worker.redis is not None and worker.redis.subscribed, "hearing")


async def test_stale_answers_say_so_in_a_header(redis_server: RedisServer) -> None:
    settings = Settings.model_validate(
        {
            "store": {"backend": "memory"},
            "cache": {"ttl_seconds": 0.3, "stale_if_error_seconds": 0},
            "redis": {"url": redis_server.url, "ttl_jitter": 0},
        }
    )
    store = MemoryStore()
    await store.put(1, b'{"id":1}')
    await store.put(2, b'{"id":2}')
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            first = await http.get("/items/1")
            assert "x-items-stale" not in first.headers
            # Past the TTL, within stale-while-revalidate: in Redis, and in the worker's own
            # layer (whose clock is the real one here).
            cache = app.state.services.cache
            window = stale_ms(settings.redis.model_dump())
            await eventually(
                lambda: stale(redis_server, 1, window) and cache.peek(1) is None, "stale"
            )
            later = await http.get("/items/1")
            assert later.headers["x-items-stale"] == "stale-while-revalidate"
            assert later.json() == first.json()
            assert later.headers["x-items-complete"] == "true"
