"""The Redis tier with the real service (gunicorn, 4 workers), the real mock upstream and a
redis-server of the test's own: fleet-wide invalidation, one load per cold id across workers,
and a Redis that stalls or dies costs no errors."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from c50k.items.demo import demo_post as post
from c50k.stack.redis import RedisServer, running_redis
from tests.e2e.conftest import Service, Upstream, start_service
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.e2e

WORKERS = 4
# The documented bound on a write reaching every worker (docs/cache.md): one pub/sub hop, or
# one heartbeat (0.5 s) later when the writer's first attempt timed out on a busy machine.
INVALIDATION_BOUND_SECONDS = 1.0
# The documented bound on a read while Redis stalls, generously: two commands' socket
# timeouts (50 ms each) on top of the upstream call, on a shared 2-core machine.
STALLED_READ_BOUND_SECONDS = 1.0
SPREAD_CONNECTIONS = 40  # Fresh connections reach every one of 4 workers (1 - 4e-5).


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cached_service(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer, upstream: Upstream
) -> Iterator[Service]:
    # In-process entries live 10 s (C50K_CACHE_TTL_SECONDS): only the invalidation message
    # can drop them in time.
    env = {"C50K_REDIS_URL": redis.url}
    tmp: Path = tmp_path_factory.mktemp("service")
    running = start_service(tmp, upstream.template, env, workers=WORKERS)
    yield running
    assert running.process.stop() == 0, running.process.log_tail()


@pytest.fixture
def slow_upstream(upstream: Upstream) -> Iterator[Upstream]:
    upstream.control(latency_ms=100)  # A miss is still loading when the others arrive.
    yield upstream
    upstream.control(latency_ms=0)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def get_once(service: Service, path: str) -> Answer:
    """One GET on a connection of its own, which the kernel hands to any worker
    (SO_REUSEPORT). Plain asyncio streams: httpx's pool takes seconds for hundreds at once."""
    port = int(service.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: c50k\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return Answer(int(status_line.split()[1]), headers, body)


async def storm(service: Service, paths: list[str]) -> list[Answer]:
    return await asyncio.gather(*(get_once(service, path) for path in paths))


def spread_gets(service: Service, path: str) -> list[Answer]:
    return asyncio.run(storm(service, [path] * SPREAD_CONNECTIONS))


def test_a_write_reaches_every_worker(cached_service: Service) -> None:
    item = 700_001  # Beyond the upstream's posts: only the store has it.
    path = f"/items/{item}"
    assert httpx.put(f"{cached_service.url}{path}", json={"v": 1}).status_code == 200
    assert all(r.json()["main_item"]["v"] == 1 for r in spread_gets(cached_service, path))

    assert httpx.put(f"{cached_service.url}{path}", json={"v": 2}).status_code == 200
    wait_until(
        lambda: (
            Counter(r.json()["main_item"].get("v") for r in spread_gets(cached_service, path))
            == {2: SPREAD_CONNECTIONS}
        ),
        "the write seen by every worker",
        INVALIDATION_BOUND_SECONDS,
    )

    assert httpx.delete(f"{cached_service.url}{path}").status_code == 204
    wait_until(
        lambda: (
            [r.json()["main_item"] for r in spread_gets(cached_service, path)]
            == [{"error": "Item not found"}] * SPREAD_CONNECTIONS
        ),
        "the delete seen by every worker",
        INVALIDATION_BOUND_SECONDS,
    )


def test_a_cold_id_reaches_the_upstream_once_across_workers(
    cached_service: Service, slow_upstream: Upstream
) -> None:
    upstream = slow_upstream
    cold = 61_000
    responses = asyncio.run(storm(cached_service, [f"/items/{cold}"] * 500))
    assert Counter(r.status for r in responses) == {200: 500}
    assert all(r.json()["main_item"] == post(cold) for r in responses)
    assert upstream.count(cold) == 1
    assert upstream.count(cold + 1) == 1


def test_a_stalled_redis_keeps_reads_within_the_bound(
    cached_service: Service, redis: RedisServer, upstream: Upstream
) -> None:
    redis.pause()
    try:
        slowest = 0.0
        with httpx.Client(base_url=cached_service.url, timeout=10) as http:
            for item in range(62_000, 62_080, 2):  # Cold ids: every read needs Redis.
                started = time.monotonic()
                response = http.get(f"/items/{item}")
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
                assert response.json() == {"main_item": post(item), "related_item": post(item + 1)}
            ready = http.get("/ready")
    finally:
        redis.resume()
    assert slowest < STALLED_READ_BOUND_SECONDS
    assert ready.status_code == 200  # Degraded, still in rotation.
    assert ready.json()["checks"]["cache"].startswith("degraded")


def test_redis_killed_under_load_then_restarted(
    cached_service: Service, redis: RedisServer, upstream: Upstream
) -> None:
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def load() -> None:
        stop_at = time.monotonic() + 30.0  # Bounded, whatever happens to the test.
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(
            base_url=cached_service.url, limits=limits, timeout=10
        ) as http:

            async def client(first: int) -> None:
                item = first
                while not stop.is_set() and time.monotonic() < stop_at:
                    response = await http.get(f"/items/{item}")
                    whole = response.headers.get("x-items-complete") == "true"
                    outcomes[f"{response.status_code} {'whole' if whole else 'partial'}"] += 1
                    item += 16  # Mostly cold ids: the reads need Redis.

            await asyncio.gather(*(client(70_000 + n) for n in range(16)))

    async def answered(more: int) -> None:
        """Until `more` answers came back from now on: the load runs through each phase."""
        target = outcomes.total() + more
        await eventually(lambda: outcomes.total() >= target, f"{more} more answers")

    async def kill_and_restart() -> None:
        running = asyncio.ensure_future(load())
        await answered(200)
        redis.kill()
        await answered(200)  # Without Redis: every worker's breaker opens.
        redis.start()
        await answered(200)
        stop.set()
        await running

    asyncio.run(kill_and_restart())
    assert set(outcomes) == {"200 whole"}, outcomes

    # The cache works again: a cold id reaches the upstream once across the workers (without
    # Redis each worker would load it). The breakers close within their open time.
    colds = iter(range(90_000, 91_000, 2))  # Far from the ids the load read.

    def loaded_once() -> bool:
        cold = next(colds)
        responses = asyncio.run(storm(cached_service, [f"/items/{cold}"] * 40))
        assert Counter(r.status for r in responses) == {200: 40}
        return upstream.count(cold) == 1

    wait_until(loaded_once, "the Redis tier back", 10.0)
