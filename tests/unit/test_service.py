"""The aggregate read: routing of sources, partial failure, the deadline, cache interplay."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from c50k.cache.memory import MemoryCache
from c50k.cache.readthrough import ReadThroughCache
from c50k.exceptions import UpstreamInvalidResponse, UpstreamStatusError, UpstreamUnavailable
from c50k.items.service import Aggregate, ItemService, Side
from c50k.items.sources import SourceChain
from c50k.settings import MAX_ITEM_ID
from c50k.store import consistency
from c50k.store.consistency import ConsistencyToken
from c50k.store.memory import MemoryStore
from tests.unit.fakes import FakeUpstream, item
from tests.waiting import eventually

URL = "http://upstream/posts/{id}"


def build(
    upstream: FakeUpstream | None, *, cached: bool = True, deadline: float = 1.0
) -> tuple[ItemService, MemoryStore]:
    store = MemoryStore()
    sources = SourceChain(store, upstream)
    cache = (
        ReadThroughCache(MemoryCache(max_items=100, ttl=60, negative_ttl=60), sources.load)
        if cached
        else None
    )
    return ItemService(store, sources, cache, deadline), store


def sides(aggregate_json: bytes) -> tuple[object, object]:
    body = orjson.loads(aggregate_json)
    return body["main_item"], body["related_item"]


async def test_store_first_then_upstream() -> None:
    upstream = FakeUpstream(items={1, 2})
    service, store = build(upstream)
    await store.put(1, item(1, "store"))
    aggregate = await service.aggregate(1)
    assert sides(aggregate.to_json()) == (
        {"id": 1, "source": "store"},
        {"id": 2, "source": "upstream"},
    )
    assert aggregate.complete
    assert upstream.calls[1] == 0  # The store answered; the upstream was never asked.


async def test_without_upstream_a_missing_item_is_not_found() -> None:
    service, _store = build(None)
    aggregate = await service.aggregate(5)
    assert sides(aggregate.to_json()) == ({"error": "Item not found"}, {"error": "Item not found"})
    assert not aggregate.complete


async def test_sides_resolve_concurrently() -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream(items={1, 2}, gate=gate)
    service, _store = build(upstream)
    aggregate = asyncio.ensure_future(service.aggregate(1))
    await eventually(lambda: upstream.in_flight == 2, "both sides at the upstream", 2.0)
    gate.set()
    await aggregate
    assert upstream.max_in_flight == 2


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (UpstreamUnavailable(URL, "reset"), "External service unavailable"),
        (UpstreamStatusError(URL, 502), "External service returned status 502"),
        (UpstreamInvalidResponse(URL, "not JSON"), "An unexpected error occurred"),
        (RuntimeError("bug"), "An unexpected error occurred"),
    ],
)
async def test_one_failed_side_keeps_the_other(error: Exception, message: str) -> None:
    upstream = FakeUpstream(items={1}, errors={2: error})
    service, _store = build(upstream)
    aggregate = await service.aggregate(1)
    assert sides(aggregate.to_json()) == ({"id": 1, "source": "upstream"}, {"error": message})
    assert not aggregate.complete


async def test_deadline_turns_the_slow_side_unavailable() -> None:
    upstream = FakeUpstream(items={1, 2}, gate=asyncio.Event())  # It never answers.
    service, store = build(upstream, cached=False, deadline=0.05)
    await store.put(1, item(1, "store"))
    aggregate = await service.aggregate(1)
    assert sides(aggregate.to_json()) == (
        {"id": 1, "source": "store"},
        {"error": "External service unavailable"},
    )


async def test_errors_are_not_cached_but_items_and_misses_are() -> None:
    upstream = FakeUpstream(items={1}, errors={2: UpstreamUnavailable(URL, "down")})
    service, _store = build(upstream)
    await service.aggregate(1)
    await service.aggregate(1)
    assert upstream.calls[1] == 1
    assert upstream.calls[2] == 2  # Failed loads are retried by the next request.
    await service.aggregate(5)
    await service.aggregate(5)
    assert upstream.calls[5] == 1  # "Not found" is cached (negative caching).


async def test_cache_off_reaches_the_upstream_every_time() -> None:
    upstream = FakeUpstream(items={1, 2})
    service, _store = build(upstream, cached=False)
    for _ in range(3):
        await service.aggregate(1)
    assert upstream.calls[1] == 3


async def test_concurrent_misses_share_one_load() -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream(items={1, 2}, gate=gate)
    service, _store = build(upstream)
    aggregates = asyncio.gather(*(service.aggregate(1) for _ in range(50)))
    await eventually(lambda: upstream.in_flight == 2, "both loads at the upstream")
    gate.set()
    await aggregates
    assert upstream.calls[1] == 1
    assert upstream.calls[2] == 1


async def test_write_invalidates_and_an_older_load_cannot_refill() -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream(items={1, 2}, gate=gate)
    service, _store = build(upstream)
    stale = asyncio.ensure_future(service.get(1))  # Starts loading from the upstream.
    await eventually(lambda: upstream.in_flight == 1, "loading")
    await service.put(1, item(1, "written"))
    gate.set()
    assert orjson.loads(await stale)["source"] == "upstream"  # It finishes, but...
    assert orjson.loads(await service.get(1))["source"] == "written"  # ...did not refill.


async def test_delete_invalidates() -> None:
    service, store = build(None)
    await store.put(3, item(3, "store"))
    assert orjson.loads(await service.get(3))["source"] == "store"
    assert await service.delete(3)
    assert sides((await service.aggregate(3)).to_json())[0] == {"error": "Item not found"}


async def test_largest_id_has_no_related_side() -> None:
    upstream = FakeUpstream(items={MAX_ITEM_ID})
    service, _store = build(upstream)
    aggregate = await service.aggregate(MAX_ITEM_ID)
    assert sides(aggregate.to_json())[1] == {"error": "Item not found"}
    assert upstream.calls[MAX_ITEM_ID + 1] == 0


async def test_cached_sides_answer_without_tasks() -> None:
    upstream = FakeUpstream(items={1, 2})
    service, _store = build(upstream)
    await service.aggregate(1)
    before = len(asyncio.all_tasks())
    coroutine = service.aggregate(1)
    # A hot aggregate completes on its first step: nothing to wait for.
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert sides(done.value.value.to_json())[0] == {"id": 1, "source": "upstream"}
    assert len(asyncio.all_tasks()) == before


async def test_a_side_past_the_deadline_still_lets_its_shared_load_fill_the_cache() -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream(items={1, 2}, gate=gate)
    service, _store = build(upstream, deadline=0.05)
    timed_out = await service.aggregate(1)
    assert sides(timed_out.to_json()) == (
        {"error": "External service unavailable"},
        {"error": "External service unavailable"},
    )
    gate.set()  # The shared loads were not cancelled with the request: they finish now.
    await eventually(lambda: upstream.in_flight == 0, "the shared loads done")
    later = await service.aggregate(1)
    assert later.complete
    assert upstream.calls[1] == 1
    assert upstream.calls[2] == 1


def test_stale_sides_are_named_once() -> None:
    fresh = Side(b'{"id":1}', True)
    swr = Side(b'{"id":2}', True, "stale-while-revalidate")
    sie = Side(b'{"id":2}', True, "stale-if-error")
    assert Aggregate(fresh, fresh).stale is None
    assert Aggregate(swr, fresh).stale == "stale-while-revalidate"
    assert Aggregate(swr, swr).stale == "stale-while-revalidate"
    assert Aggregate(swr, sie).stale == "stale-while-revalidate,stale-if-error"


async def test_a_read_with_a_consistency_token_skips_every_cache() -> None:
    service, store = build(None)
    await store.put(1, item(1, "old"))
    await store.put(2, item(2, "old"))
    assert sides((await service.aggregate(1)).to_json())[0] == {"id": 1, "source": "old"}
    # Written elsewhere (another worker): this worker's cache still holds the old version.
    await store.put(1, item(1, "new"))
    assert sides((await service.aggregate(1)).to_json())[0] == {"id": 1, "source": "old"}

    async def with_token() -> Aggregate:
        consistency.read_after.set(ConsistencyToken(shard=0, lsn=1))
        return await service.aggregate(1)

    # In a task of its own, as each request is: the token does not outlive the request.
    fresh = await asyncio.create_task(with_token())
    assert sides(fresh.to_json()) == ({"id": 1, "source": "new"}, {"id": 2, "source": "old"})
    assert consistency.read_after.get() is None
