"""This worker's subscription to the invalidation channel, and the proof that it hears it.

Every `heartbeat` the worker publishes to a channel of its own, through the same pool as its
writes, and its subscription hears it. While something arrives at least every
`SILENT_BEATS` beats, every write's invalidation reaches this worker too, so its in-process
entries may live as long as Redis's. When the channel goes silent (Redis down or stalled, a
connection dead without a FIN, the breaker open) `heard(False)` tells the cache, which clears
its in-process layer and keeps entries only briefly; once subscribed again, `heard(True)`
(after the messages it may have missed, so the cache clears again).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from c50k.cache.shared import RedisLayer

logger = logging.getLogger(__name__)

SILENT_BEATS = 3
RESUBSCRIBE_FIRST_SECONDS = 0.05
RESUBSCRIBE_MAX_SECONDS = 1.0
_ERRORS = (RedisError, OSError, TimeoutError)


class Subscription:
    def __init__(
        self,
        layer: RedisLayer,
        drop: Callable[[int], None],
        heard: Callable[[bool], None],
    ) -> None:
        self._layer = layer
        self._drop = drop
        self._heard = heard
        self._beat = layer.settings.heartbeat_seconds
        self._channel = layer.keys.channel
        self._beat_channel = f"{layer.keys.prefix}:beat:{secrets.token_hex(8)}"
        self.hearing = False
        self._tasks = [
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._heartbeat()),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _heartbeat(self) -> None:
        while True:
            await self._layer.publish(self._beat_channel, b"")
            await asyncio.sleep(self._beat)

    async def _listen(self) -> None:
        settings = self._layer.settings
        # Its own connection without a socket timeout: silence is judged by the heartbeat.
        client: Redis = Redis.from_url(
            settings.url or "",
            socket_connect_timeout=settings.connect_timeout_seconds,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
        )
        backoff = RESUBSCRIBE_FIRST_SECONDS
        try:
            while True:
                pubsub = client.pubsub()
                try:
                    subscribing = pubsub.subscribe(self._channel, self._beat_channel)
                    await asyncio.wait_for(subscribing, SILENT_BEATS * self._beat)
                    self._set(hearing=True)
                    backoff = RESUBSCRIBE_FIRST_SECONDS
                    await self._until_silent(pubsub)
                    logger.warning("redis: no heartbeat for %d beats", SILENT_BEATS)
                except _ERRORS as exc:
                    logger.debug("redis subscription: %r", exc)
                finally:
                    self._set(hearing=False)
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # Untyped in redis-py 8.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESUBSCRIBE_MAX_SECONDS)
        finally:
            await client.aclose()

    async def _until_silent(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        channel = self._channel.encode()
        while loop.time() - last < SILENT_BEATS * self._beat:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._beat)
            if message is None:
                continue
            last = loop.time()
            if message["channel"] == channel:
                self._received(message["data"])

    def _set(self, *, hearing: bool) -> None:
        if hearing != self.hearing:
            self.hearing = hearing
            if hearing:
                self._layer.stats.subscription_resets += 1
            self._heard(hearing)

    def _received(self, data: bytes) -> None:
        try:
            item_id = int(data)
        except ValueError:
            logger.warning("redis: ignored invalidation %r", data)
            return
        self._layer.stats.invalidations_received += 1
        self._drop(item_id)
