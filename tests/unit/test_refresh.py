"""The in-process layer alone: refresh-ahead, stale-while-revalidate and stale-if-error, on a
fake clock, with a loader the test releases."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from c50k.cache.memory import MemoryCache
from c50k.cache.readthrough import (
    STALE_IF_ERROR,
    STALE_WHILE_REVALIDATE,
    Freshness,
    ReadThroughCache,
)
from c50k.exceptions import UpstreamUnavailable
from c50k.types import ItemJson
from tests.unit.fakes import Clock

TTL = 10.0
WINDOWS = Freshness(ttl=TTL, negative_ttl=2.0, stale_while_revalidate=5.0, stale_if_error=60.0)


class GatedLoader:
    """Loads version N of an item; each load waits until the test opens the gate."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False

    async def __call__(self, item_id: int) -> ItemJson:
        self.calls[item_id] += 1
        await self.gate.wait()
        if self.failing:
            raise UpstreamUnavailable("http://upstream", "down")
        return f'{{"id":{item_id},"v":{self.calls[item_id]}}}'.encode()


def build(clock: Clock, loader: GatedLoader) -> ReadThroughCache:
    memory = MemoryCache(
        100, TTL, 2.0, timer=clock, stale_seconds=WINDOWS.stale_seconds, refresh_ahead=0.5
    )
    return ReadThroughCache(memory, loader, freshness=WINDOWS)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_hit_past_half_its_ttl_refreshes_it_once_in_the_background() -> None:
    clock, loader = Clock(), GatedLoader()
    cache = build(clock, loader)
    assert await cache.get(1) == b'{"id":1,"v":1}'
    loader.gate.clear()
    clock.now = 6.0
    for _ in range(100):
        entry = cache.peek(1)
        assert entry is not None
        assert (entry.body, entry.stale) == (b'{"id":1,"v":1}', None)  # Fresh: no header.
    await settle()
    assert loader.calls[1] == 2  # One refresh for a hundred hits.
    loader.gate.set()
    await settle()
    entry = cache.peek(1)
    assert entry is not None
    assert entry.body == b'{"id":1,"v":2}'
    await cache.close()


async def test_an_expired_entry_is_served_stale_while_exactly_one_refresh_runs() -> None:
    clock, loader = Clock(), GatedLoader()
    cache = build(clock, loader)
    await cache.get(1)
    loader.gate.clear()
    clock.now = TTL + 1  # Past its TTL, no hit in between.
    served = [cache.peek(1) for _ in range(100)]
    assert all(e is not None and e.stale == STALE_WHILE_REVALIDATE for e in served)
    assert all(e is not None and e.body == b'{"id":1,"v":1}' for e in served)
    entry = await cache.lookup(1)  # A waiting reader is answered at once too.
    assert entry.stale == STALE_WHILE_REVALIDATE
    await settle()
    assert loader.calls[1] == 2
    assert cache.stats.stale_while_revalidate == 101
    loader.gate.set()
    await settle()
    refreshed = cache.peek(1)
    assert refreshed is not None
    assert (refreshed.body, refreshed.stale) == (b'{"id":1,"v":2}', None)
    await cache.close()


async def test_a_failed_refresh_is_served_stale_if_error_until_the_bound() -> None:
    clock, loader = Clock(), GatedLoader()
    cache = build(clock, loader)
    await cache.get(1)
    loader.failing = True
    clock.now = TTL + 1
    assert cache.peek(1) is not None
    await settle()  # The refresh failed.
    assert cache.stats.refresh_errors == 1
    clock.now = TTL + 5.5  # Past stale-while-revalidate: served because the refresh failed.
    entry = cache.peek(1)
    assert entry is not None
    assert (entry.body, entry.stale) == (b'{"id":1,"v":1}', STALE_IF_ERROR)
    await settle()
    assert cache.stats.refresh_errors == 2  # Retried, one second after the first failure.
    clock.now = TTL + 5.6
    assert cache.peek(1) is not None
    await settle()
    assert loader.calls[1] == 3  # Not again within the second: the source is down.
    clock.now = TTL + 61  # Past the bound: no longer served; a reader gets the error.
    assert cache.peek(1) is None
    with pytest.raises(UpstreamUnavailable):
        await cache.lookup(1)
    await cache.close()


async def test_a_load_that_fails_falls_back_to_the_old_value_within_the_bound() -> None:
    clock, loader = Clock(), GatedLoader()
    cache = build(clock, loader)
    await cache.get(1)
    loader.failing = True
    clock.now = TTL + 30  # Too old to serve without asking, young enough to fall back on.
    assert cache.peek(1) is None
    entry = await cache.lookup(1)
    assert (entry.body, entry.stale) == (b'{"id":1,"v":1}', STALE_IF_ERROR)
    await cache.close()


async def test_a_write_during_a_refresh_is_not_undone_by_it() -> None:
    clock, loader = Clock(), GatedLoader()
    cache = build(clock, loader)
    await cache.get(1)
    loader.gate.clear()
    clock.now = 6.0
    cache.peek(1)  # Starts the refresh, which reads the old version...
    await settle()
    await cache.invalidate(1)  # ...and a write lands meanwhile.
    loader.gate.set()
    await settle()
    assert cache.peek(1) is None  # The refresh's (older) value was not stored.
    await cache.close()
