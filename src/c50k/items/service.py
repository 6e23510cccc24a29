"""The aggregate read and the writes of items, over the cache and the source chain."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from c50k.cache.readthrough import ReadThroughCache
from c50k.exceptions import C50kError, ItemNotFound, StoreError
from c50k.items import outcomes
from c50k.items.deadlines import Deadlines
from c50k.items.sources import SourceChain
from c50k.settings import MAX_ITEM_ID
from c50k.store import consistency
from c50k.store.base import ItemStore, Page
from c50k.types import ItemJson

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Side:
    body: ItemJson  # The item, or its error object.
    resolved: bool
    stale: str | None = None  # Why an old value was served (cache/readthrough.py).


@dataclass(frozen=True, slots=True)
class Aggregate:
    main: Side
    related: Side

    @property
    def complete(self) -> bool:
        return self.main.resolved and self.related.resolved

    @property
    def stale(self) -> str | None:
        """Why either side is an old value, if one is (the X-Items-Stale header)."""
        reasons = dict.fromkeys(s.stale for s in (self.main, self.related) if s.stale)
        return ",".join(reasons) if reasons else None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "main_item": orjson.Fragment(self.main.body),
                "related_item": orjson.Fragment(self.related.body),
            }
        )


class ItemService:
    def __init__(
        self,
        store: ItemStore,
        sources: SourceChain,
        cache: ReadThroughCache | None,
        deadline_seconds: float,
    ) -> None:
        self._store = store
        self._sources = sources
        self._cache = cache
        self._deadlines = Deadlines(deadline_seconds)

    async def aggregate(self, item_id: int) -> Aggregate:
        """Item `item_id` and its related item `item_id + 1`, resolved concurrently.

        Each side fails on its own: its error object stands in and the other side is kept.
        Both together take at most the request deadline.
        """
        main_id, related_id = item_id, item_id + 1
        # Hot path: both sides cached means no task, no await, no timer.
        main = self._cached(main_id)
        related = self._cached(related_id) if related_id <= MAX_ITEM_ID else _NOT_FOUND
        if main is not None and related is not None:
            return Aggregate(main, related)

        if related is not None:  # Only the main side to load: no second task needed.
            return Aggregate(await self._within_deadline(main_id), related)
        if main is not None:
            return Aggregate(main, await self._within_deadline(related_id))
        # Both to load: the related side in a task of its own, the main one in this task.
        other = asyncio.ensure_future(self._side(related_id))
        main = _TIMED_OUT
        try:
            async with self._deadlines.within():
                main = await self._side(main_id)
                return Aggregate(main, await other)
        except TimeoutError:
            return Aggregate(main, _result_or_timeout(other))

    async def _within_deadline(self, item_id: int) -> Side:
        try:
            async with self._deadlines.within():
                return await self._side(item_id)
        except TimeoutError:
            return _TIMED_OUT

    async def get(self, item_id: int) -> ItemJson:
        # A read with a consistency token must see the client's write: any cache, this
        # worker's or another's, may still hold the version before it.
        if self._cache is not None and consistency.read_after.get() is None:
            return await self._cache.get(item_id)
        return await self._sources.load(item_id)

    async def _resolve(self, item_id: int) -> Side:
        # A read with a consistency token must see the client's write: any cache, this
        # worker's or another's, may still hold the version before it.
        if self._cache is None or consistency.read_after.get() is not None:
            return Side(await self._sources.load(item_id), True)
        entry = await self._cache.lookup(item_id)
        if entry.body is None:
            raise ItemNotFound(item_id)
        return Side(entry.body, True, entry.stale)

    async def put(self, item_id: int, body: ItemJson) -> None:
        try:
            await self._store.put(item_id, body)
        finally:
            # Even when the write failed: it may have committed before the error arrived.
            await self._invalidate(item_id)

    async def delete(self, item_id: int) -> bool:
        try:
            return await self._store.delete(item_id)
        finally:
            await self._invalidate(item_id)

    async def page(self, after: int, limit: int) -> Page:
        return await self._store.page(after, limit)

    async def _invalidate(self, item_id: int) -> None:
        if self._cache is not None:
            await self._cache.invalidate(item_id)

    def _cached(self, item_id: int) -> Side | None:
        if self._cache is None or consistency.read_after.get() is not None:
            return None
        entry = self._cache.peek(item_id)
        if entry is None:
            return None
        if entry.body is None:
            return _NOT_FOUND
        return Side(entry.body, True, entry.stale)

    async def _side(self, item_id: int) -> Side:
        try:
            return await self._resolve(item_id)
        except C50kError as exc:
            # Expected failures (not found, upstream, store): the error object says it all,
            # but a failing store is the operator's problem and must show in the log.
            if isinstance(exc, StoreError):
                logger.warning("reading item %d: %s", item_id, exc)
            return Side(outcomes.error_object(exc), False)
        except Exception:
            logger.exception("resolving item %d failed", item_id)
            return Side(outcomes.UNEXPECTED, False)


_NOT_FOUND = Side(outcomes.NOT_FOUND, False)
_TIMED_OUT = Side(outcomes.UNAVAILABLE, False)


def _result_or_timeout(task: asyncio.Task[Side]) -> Side:
    if task.done() and not task.cancelled():
        return task.result()
    # Past the deadline. Cancelling the side does not cancel a shared cache load.
    task.cancel()
    return _TIMED_OUT
