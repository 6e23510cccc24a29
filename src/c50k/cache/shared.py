"""The Redis layer: one pooled redis-py asyncio client per worker, every command bounded by
tens of milliseconds and guarded by a circuit breaker, and a subscription that tells this
worker which ids other workers (of any node) wrote (subscription.py).

No method raises for Redis's sake: a failure, a timeout or an open breaker answers
`UNAVAILABLE` (or False), and the caller goes to the store and upstream instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from c50k.cache.breaker import CircuitBreaker
from c50k.cache.envelope import Stored, decode, encode
from c50k.cache.keys import KeySpace
from c50k.cache.stats import CacheStats
from c50k.cache.subscription import Subscription
from c50k.settings import RedisSettings

logger = logging.getLogger(__name__)

# One round trip for a miss: the value if fresh; else the value (stale or none) and whether
# this caller now holds the lease to load it. A stale value's freshness is its PTTL against
# the stale window written at its head (envelope.py).
CLAIM = """
local value = redis.call('GET', KEYS[1])
local ttl = -2
if value then
  ttl = redis.call('PTTL', KEYS[1])
  local stale_ms = tonumber(string.match(value, '^%[(%d+),'))
  if stale_ms and (ttl < 0 or ttl > stale_ms) then
    return {1, value, ttl}
  end
end
local leased = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
return {leased and 2 or 0, value or false, ttl}
"""
# Only the lease holder writes a value, and only while the lease is still its own: a write's
# invalidation deletes the lease, so a load that began before the write cannot put the old
# value back.
FILL = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return redis.call('DEL', KEYS[2])
end
return 0
"""
FRESH, LEASED = 1, 2
# Connections each worker opens at start, so a burst's first misses do not wait on connects.
WARM_CONNECTIONS = 4
# Writes whose invalidation could not reach Redis, kept to retry once it answers again.
MAX_PENDING_INVALIDATIONS = 10_000


@dataclass(frozen=True, slots=True)
class Claim:
    stored: Stored | None  # The value Redis holds (fresh or stale), if any.
    fresh: bool
    leased: bool  # This caller holds the lease and should load.
    stale_for_ms: int = 0  # How long past its TTL a stale value is.


# What a guarded command answers when it could not run (None is a valid Redis reply).
UNAVAILABLE: Final = object()

_ERRORS = (RedisError, OSError, TimeoutError)


class RedisLayer:
    def __init__(self, settings: RedisSettings, stats: CacheStats) -> None:
        if settings.url is None:
            raise ValueError("the Redis layer needs C50K_REDIS_URL")
        self.settings = settings
        self.stats = stats
        self.keys = KeySpace(settings.namespace, settings.version)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_open_seconds)
        no_retries = Retry(NoBackoff(), 0)  # A retry would double the time a dead Redis costs.
        self._pool = BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.max_connections,
            timeout=settings.connect_timeout_seconds + settings.socket_timeout_seconds,
            socket_connect_timeout=settings.connect_timeout_seconds,
            socket_timeout=settings.socket_timeout_seconds,
            retry=no_retries,
        )
        self._client = Redis(connection_pool=self._pool, retry=no_retries)
        self._claim = self._client.register_script(CLAIM)
        self._fill = self._client.register_script(FILL)
        self._release = self._client.register_script(RELEASE)
        self._subscription: Subscription | None = None
        # Ids written while Redis was unreachable: their old values may still be in Redis
        # (a stall or a partition keeps them), so the invalidation is sent again later.
        self.pending: dict[int, None] = {}
        self._flushing: asyncio.Task[None] | None = None

    async def _guarded(self, command: Callable[[], Any]) -> Any:
        """Run one command unless the breaker is open; UNAVAILABLE when it could not run."""
        if not self.breaker.allow():
            self.stats.redis_skipped += 1
            return UNAVAILABLE
        try:
            result = await command()
        except _ERRORS as exc:
            self.stats.redis_errors += 1
            logger.debug("redis command failed: %r", exc)
            was = self.breaker.state
            self.breaker.failure()
            if was != "open" and self.breaker.state == "open":
                logger.warning(
                    "redis breaker open for %.1f s (reads go to the sources): %r",
                    self.settings.breaker_open_seconds,
                    exc,
                )
            return UNAVAILABLE
        except BaseException:
            self.breaker.abandon()  # Cancelled: no verdict on Redis.
            raise
        if self.breaker.state != "closed":
            logger.warning("redis breaker closed: Redis answers again")
        self.breaker.success()
        if self.pending and self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush_pending())
        return result

    async def claim(self, item_id: int, token: str) -> Claim | None:
        keys = [self.keys.item(item_id), self.keys.lease(item_id)]
        lease_ms = self.settings.lease_ms
        reply = await self._guarded(lambda: self._claim(keys, [token, lease_ms]))
        if reply is UNAVAILABLE:
            return None
        kind, value, ttl = reply
        stored = decode(value) if value else None
        if kind == FRESH and stored is not None:
            return Claim(stored, fresh=True, leased=False)
        stale_for = stored.stale_ms - int(ttl) if stored is not None else 0
        return Claim(stored, fresh=False, leased=kind == LEASED, stale_for_ms=stale_for)

    async def fill(self, item_id: int, token: str, stored: Stored, ttl_ms: int) -> bool:
        """Write the value this caller loaded under its lease, for `ttl_ms` plus its stale
        window; False when the lease is no longer its own (a write came) or Redis failed."""
        keys = [self.keys.item(item_id), self.keys.lease(item_id)]
        value = encode(stored.body, stored.stale_ms)
        args: list[str | bytes | int] = [token, value, ttl_ms + stored.stale_ms]
        written: object = await self._guarded(lambda: self._fill(keys, args))
        return written == 1

    async def release(self, item_id: int, token: str) -> None:
        keys = [self.keys.item(item_id), self.keys.lease(item_id)]
        await self._guarded(lambda: self._release(keys, [token]))

    async def invalidate(self, item_id: int) -> bool:
        """Delete the value and any lease, and tell every worker to drop the id."""

        async def delete_and_publish() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.item(item_id), self.keys.lease(item_id))
                pipe.publish(self.keys.channel, str(item_id))
                await pipe.execute()

        done = await self._guarded(delete_and_publish) is not UNAVAILABLE
        if done:
            self.stats.invalidations_sent += 1
        else:
            self._remember_pending(item_id)
        return done

    def _remember_pending(self, item_id: int) -> None:
        self.pending[item_id] = None
        if len(self.pending) > MAX_PENDING_INVALIDATIONS:
            dropped = next(iter(self.pending))
            del self.pending[dropped]
            logger.warning(
                "redis: too many pending invalidations; item %d may be stale "
                "in Redis until its TTL",
                dropped,
            )

    async def _flush_pending(self) -> None:
        try:
            while self.pending:
                item_id = next(iter(self.pending))
                del self.pending[item_id]
                if not await self.invalidate(item_id):
                    return  # Still unreachable: kept (again) for the next success.
        finally:
            self._flushing = None

    async def warm(self) -> bool:
        """Load the scripts and open a few connections before the first request needs them
        (a cold miss would otherwise pay connects and a NOSCRIPT round trip). False when Redis
        does not answer: the service starts anyway and uses Redis once it does."""

        async def load_scripts() -> None:
            for script in (self._claim, self._fill, self._release):
                await self._client.script_load(script.script)

        connected = await asyncio.gather(*(self.ping() for _ in range(WARM_CONNECTIONS)))
        return all(connected) and await self._guarded(load_scripts) is not UNAVAILABLE

    async def ping(self) -> bool:
        return await self._guarded(self._client.ping) is not UNAVAILABLE

    def listen(self, drop: Callable[[int], None], heard: Callable[[bool], None]) -> None:
        """Subscribe to invalidations: `drop(id)` for each id written anywhere; `heard(True)`
        while every invalidation reaches this worker, `heard(False)` when some may not."""
        self._subscription = Subscription(self, drop, heard)

    @property
    def subscribed(self) -> bool:
        return self._subscription is not None and self._subscription.hearing

    async def publish(self, channel: str, message: bytes) -> bool:
        return (
            await self._guarded(lambda: self._client.publish(channel, message)) is not UNAVAILABLE
        )

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self._client.aclose()
        await self._pool.disconnect()
