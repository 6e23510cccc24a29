"""Read-through caching of items: the in-process layer, then Redis (when configured), then one
shared load per key.

A write invalidates the key *and* detaches any load in flight for it, so a load that started
before the write can never put the old value back into the cache: in this worker through
single-flight, across the fleet through the Redis lease that the write deletes (shared.py).

With Redis, a miss runs at most one load per key across every worker and node: the worker's
single flight asks Redis for the value or the lease; the lease holder loads and writes the
value, the others poll Redis for it (bounded by the lease), then load themselves.
After its TTL a value is served stale for a bounded time while one caller refreshes it
(stale-while-revalidate), and longer when the refresh fails (stale-if-error).

With the in-process layer alone, a hit on an entry past `refresh_ahead` of its TTL starts one
background refresh (single-flight, so a write's invalidation detaches it like any load) and is
served at once; a hot entry is reloaded before it expires, and a refresh, however long it waits
behind a busy event loop, is never a request's error. Past its TTL the entry is served stale
while a refresh runs (up to `stale_while_revalidate`), and up to `stale_if_error` when the last
refresh failed or a load fails. An entry is never served more than TTL + the larger window after
it was loaded; beyond that, requests load it themselves, within their deadline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from c50k.cache.envelope import Stored
from c50k.cache.keys import jittered_ms
from c50k.cache.memory import Entry, MemoryCache, Slot
from c50k.cache.shared import Claim, RedisLayer
from c50k.cache.singleflight import SingleFlight
from c50k.cache.stats import CacheStats
from c50k.exceptions import C50kError, ItemNotFound
from c50k.types import ItemJson

logger = logging.getLogger(__name__)

STALE_WHILE_REVALIDATE = "stale-while-revalidate"
STALE_IF_ERROR = "stale-if-error"
# A waiter polls Redis for the lease holder's value, first soon, then less often.
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.05
# After a failed background refresh, the next one waits this long: a source that is down gets
# one try a second per key and worker, not one per hit.
REFRESH_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LocalTtl:
    """TTLs (found, not found) of the in-process layer in front of Redis: long while this
    worker hears every invalidation, short while it may miss some."""

    heard: tuple[float, float]
    unheard: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Freshness:
    """How long values live in Redis (seconds): found, not found, and the stale windows."""

    ttl: float
    negative_ttl: float
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    jitter: float = 0.0

    @property
    def stale_seconds(self) -> float:
        """How long past its TTL a value may be served at most."""
        return max(self.stale_while_revalidate, self.stale_if_error)

    @property
    def stale_ms(self) -> int:
        return round(self.stale_seconds * 1000)


class ReadThroughCache:
    def __init__(
        self,
        memory: MemoryCache | None,
        load: Callable[[int], Awaitable[ItemJson]],
        *,
        redis: RedisLayer | None = None,
        freshness: Freshness | None = None,
        local_ttl: LocalTtl | None = None,
        stats: CacheStats | None = None,
    ) -> None:
        self._memory = memory
        self._load = load
        self._redis = redis
        self._freshness = freshness or Freshness(ttl=10.0, negative_ttl=2.0)
        self.stats = stats if stats is not None else CacheStats()
        self._flights: SingleFlight[int, Entry] = SingleFlight()
        self._refreshes: set[asyncio.Task[object]] = set()
        self._local_ttl = local_ttl
        if redis is not None:
            redis.listen(self._forget, self._hearing)

    @property
    def redis(self) -> RedisLayer | None:
        return self._redis

    def peek(self, item_id: int) -> Entry | None:
        """The in-process entry, without waiting: the hot path answers from here."""
        memory = self._memory
        if memory is None:
            return None
        slot = memory.slot(item_id)
        if slot is not None:
            now = memory.timer()
            if now < slot.refresh_at:
                self.stats.local_hits += 1
                return slot.entry
            entry = self._aging(item_id, slot, now)
            if entry is not None:
                return entry
        self.stats.local_misses += 1
        return None

    def _aging(self, item_id: int, slot: Slot, now: float) -> Entry | None:
        """An entry due for its refresh, or past its TTL: what may still be served of it."""
        if self._redis is not None:
            # In front of Redis the local TTL bounds what a missed invalidation can cost:
            # nothing is served past it (Redis has its own stale windows).
            if now < slot.fresh_until:
                self.stats.local_hits += 1
                return slot.entry
            return None
        self._refresh_soon(item_id, slot, now)
        if now < slot.fresh_until:
            self.stats.local_hits += 1
            return slot.entry
        return self._servable(slot, now - slot.fresh_until, failed=slot.failed_at is not None)

    def _servable(self, slot: Slot, stale_for: float, *, failed: bool) -> Entry | None:
        fresh = self._freshness
        if stale_for < fresh.stale_while_revalidate:
            self.stats.stale_while_revalidate += 1
            return Entry(slot.entry.body, STALE_WHILE_REVALIDATE)
        if failed and stale_for < fresh.stale_if_error:
            self.stats.stale_if_error += 1
            return Entry(slot.entry.body, STALE_IF_ERROR)
        return None

    def _refresh_soon(self, item_id: int, slot: Slot, now: float) -> None:
        if item_id in self._flights:
            return  # A load or refresh of it runs already.
        if slot.failed_at is not None and now - slot.failed_at < REFRESH_RETRY_SECONDS:
            return
        task = self._flights.start(item_id, lambda: self._refresh_slot(item_id, slot))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh_slot(self, item_id: int, slot: Slot) -> Entry:
        try:
            entry = await self._from_sources(item_id)
        except Exception as exc:
            # The entry stays; it is served stale-if-error once it is past its TTL.
            assert self._memory is not None  # noqa: S101 -- refreshes need the layer.
            slot.failed_at = self._memory.timer()
            self.stats.refresh_errors += 1
            if isinstance(exc, C50kError):
                logger.info("refreshing item %d: %s", item_id, exc)
            else:
                logger.exception("refreshing item %d failed", item_id)
            raise
        self._remember(item_id, entry)
        return entry

    async def get(self, item_id: int) -> ItemJson:
        entry = await self.lookup(item_id)
        if entry.body is None:
            raise ItemNotFound(item_id)
        return entry.body

    async def lookup(self, item_id: int) -> Entry:
        """The entry for `item_id`; its body is None for "not found", and `stale` names why
        an old value was served."""
        entry = self.peek(item_id)
        if entry is not None:
            return entry
        try:
            return await self._flights.do(item_id, lambda: self._fill(item_id))
        except C50kError:
            # With the in-process layer alone, an old value within stale-if-error beats an
            # error object (with Redis, the Redis layer decides: _stale).
            memory = self._memory
            slot = memory.slot(item_id) if memory is not None and self._redis is None else None
            if memory is not None and slot is not None:
                stale = self._servable(slot, memory.timer() - slot.fresh_until, failed=True)
                if stale is not None:
                    return stale
            raise

    async def invalidate(self, item_id: int) -> None:
        self._forget(item_id)
        if self._redis is not None:
            await self._redis.invalidate(item_id)

    async def close(self) -> None:
        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)
        if self._redis is not None:
            await self._redis.close()

    def _forget(self, item_id: int) -> None:
        if self._memory is not None:
            self._memory.delete(item_id)
        self._flights.forget(item_id)

    def _hearing(self, heard: bool) -> None:
        """Entries cached under the other regime go: kept long while invalidations may have
        been missed, or kept short for no reason once they are heard again."""
        if self._memory is None:
            return
        self._memory.clear()
        if self._local_ttl is not None:
            self._memory.retime(*(self._local_ttl.heard if heard else self._local_ttl.unheard))

    def _remember(self, item_id: int, entry: Entry) -> None:
        if self._memory is not None and self._flights.is_current(item_id, asyncio.current_task()):
            self._memory.set(item_id, entry)

    async def _fill(self, item_id: int) -> Entry:
        if self._redis is None:
            entry = await self._from_sources(item_id)
            self._remember(item_id, entry)
            return entry
        return await self._through_redis(self._redis, item_id)

    async def _from_sources(self, item_id: int) -> Entry:
        self.stats.loads += 1
        try:
            return Entry(await self._load(item_id))
        except ItemNotFound:
            return Entry(None)
        # Errors (upstream down, store busy) are not cached: the next request tries again.

    async def _through_redis(self, redis: RedisLayer, item_id: int) -> Entry:
        token = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + redis.settings.lease_ms / 1000
        delay = POLL_FIRST_SECONDS
        waited = False
        while True:
            claim = await redis.claim(item_id, token)
            if claim is None:  # Redis unavailable: straight to the sources.
                break
            if claim.fresh and claim.stored is not None:
                self.stats.redis_hits += 1
                entry = Entry(claim.stored.body)
                self._remember(item_id, entry)
                return entry
            if claim.stored is not None:
                return await self._stale(redis, item_id, token, claim)
            if claim.leased:
                self.stats.redis_misses += 1
                return await self._load_under_lease(redis, item_id, token)
            # Another worker loads it: wait for its value instead of loading too.
            if not waited:
                self.stats.lease_waits += 1
                waited = True
            if loop.time() + delay > give_up_at:
                self.stats.lease_timeouts += 1
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)
        entry = await self._from_sources(item_id)
        self._remember(item_id, entry)
        return entry

    async def _load_under_lease(self, redis: RedisLayer, item_id: int, token: str) -> Entry:
        try:
            entry = await self._from_sources(item_id)
        except BaseException:
            await redis.release(item_id, token)
            raise
        await self._write(redis, item_id, token, entry)
        self._remember(item_id, entry)
        return entry

    async def _write(self, redis: RedisLayer, item_id: int, token: str, entry: Entry) -> None:
        fresh = self._freshness
        if entry.body is None:
            if fresh.negative_ttl <= 0:
                await redis.release(item_id, token)
                return
            stored, ttl_ms = Stored(None, 0), jittered_ms(fresh.negative_ttl, fresh.jitter)
        else:
            stored, ttl_ms = (
                Stored(entry.body, fresh.stale_ms),
                jittered_ms(fresh.ttl, fresh.jitter),
            )
        await redis.fill(item_id, token, stored, ttl_ms)

    async def _stale(self, redis: RedisLayer, item_id: int, token: str, claim: Claim) -> Entry:
        """A value past its TTL: serve it while one caller refreshes it, or load now when it
        is older than the stale-while-revalidate window and serve it only if that fails."""
        assert claim.stored is not None  # noqa: S101 -- checked by the caller.
        stale = claim.stored.body
        within_swr = claim.stale_for_ms <= self._freshness.stale_while_revalidate * 1000
        if claim.leased and not within_swr:
            try:
                return await self._load_under_lease(redis, item_id, token)
            except C50kError:
                self.stats.stale_if_error += 1
                return Entry(stale, STALE_IF_ERROR)
        if claim.leased:
            task = asyncio.ensure_future(self._refresh(redis, item_id, token))
            self._refreshes.add(task)
            task.add_done_callback(self._refreshes.discard)
        self.stats.stale_while_revalidate += 1
        return Entry(stale, STALE_WHILE_REVALIDATE)

    async def _refresh(self, redis: RedisLayer, item_id: int, token: str) -> None:
        try:
            entry = await self._from_sources(item_id)
        except C50kError as exc:
            # The stale value stays, and is served as stale-if-error once the window passes.
            self.stats.refresh_errors += 1
            logger.info("refreshing item %d: %s", item_id, exc)
            await redis.release(item_id, token)
            return
        await self._write(redis, item_id, token, entry)
