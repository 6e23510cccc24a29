from __future__ import annotations

from c50k.cache.memory import Entry, MemoryCache
from tests.unit.fakes import Clock


def test_found_items_live_ttl_and_missing_ones_negative_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(max_items=10, ttl=10.0, negative_ttl=2.0, timer=clock)
    cache.set(1, Entry(b'{"id":1}'))
    cache.set(2, Entry(None))
    clock.now = 1.9
    assert cache.get(1) == Entry(b'{"id":1}')
    assert cache.get(2) == Entry(None)
    clock.now = 2.1
    assert cache.get(2) is None
    assert cache.get(1) is not None
    clock.now = 10.1
    assert cache.get(1) is None


def test_size_bound_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_items=2, ttl=10.0, negative_ttl=1.0, timer=Clock())
    cache.set(1, Entry(b"1"))
    cache.set(2, Entry(b"2"))
    assert cache.get(1) is not None  # 1 is now more recent than 2.
    cache.set(3, Entry(b"3"))
    assert cache.get(2) is None
    assert cache.get(1) is not None
    assert cache.get(3) is not None
    assert len(cache) == 2


def test_zero_negative_ttl_disables_negative_caching() -> None:
    cache = MemoryCache(max_items=2, ttl=10.0, negative_ttl=0.0, timer=Clock())
    cache.set(1, Entry(None))
    assert cache.get(1) is None


def test_delete() -> None:
    cache = MemoryCache(max_items=2, ttl=10.0, negative_ttl=1.0, timer=Clock())
    cache.set(1, Entry(b"1"))
    cache.delete(1)
    cache.delete(1)  # Deleting a missing key is fine.
    assert cache.get(1) is None
