"""The in-process cache layer: bounded by entries (least recently used goes), and by age.

Found items are fresh for `ttl` seconds; "not found" answers for the shorter `negative_ttl`, so
a burst of reads of a missing id costs one lookup, and a new item shows up soon after. An entry
past its TTL is kept `stale_seconds` longer, for the read-through layer to serve while it
refreshes the entry (cache/readthrough.py), and it is due for that refresh from `refresh_ahead`
of its TTL on, so a hot entry is normally reloaded before it ever goes stale.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from c50k.types import ItemJson


@dataclass(frozen=True, slots=True)
class Entry:
    # None records that no source has the item (negative caching).
    body: ItemJson | None
    # Why an old value is served ("stale-while-revalidate", "stale-if-error"); never stored.
    stale: str | None = None


class Slot:
    """A stored entry and its clock: due for a refresh from `refresh_at`, stale from
    `fresh_until`; `failed_at` is when its last refresh failed."""

    __slots__ = ("entry", "failed_at", "fresh_until", "refresh_at")

    def __init__(self, entry: Entry, refresh_at: float, fresh_until: float) -> None:
        self.entry = entry
        self.refresh_at = refresh_at
        self.fresh_until = fresh_until
        self.failed_at: float | None = None


class MemoryCache:
    def __init__(
        self,
        max_items: int,
        ttl: float,
        negative_ttl: float,
        timer: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
        *,
        stale_seconds: float = 0.0,
        refresh_ahead: float = 1.0,
    ) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._jitter = jitter
        self._stale_seconds = stale_seconds
        self._refresh_ahead = refresh_ahead
        self.timer = timer
        self._slots: TLRUCache[int, Slot] = TLRUCache(
            maxsize=max_items, ttu=self._kept_until, timer=timer
        )

    def _kept_until(self, _key: int, slot: Slot, _now: float) -> float:
        return slot.fresh_until + self._stale_seconds

    def get(self, key: int) -> Entry | None:
        """The entry while it is fresh."""
        slot = self._slots.get(key)
        if slot is None or slot.fresh_until <= self.timer():
            return None
        return slot.entry

    def slot(self, key: int) -> Slot | None:
        """The stored entry with its clock, fresh or stale (until `stale_seconds` past it)."""
        return self._slots.get(key)

    def set(self, key: int, entry: Entry) -> None:
        ttl = self._ttl if entry.body is not None else self._negative_ttl
        if ttl <= 0:
            return
        if self._jitter:
            # Shorter, never longer (the TTL is a bound): entries filled together expire apart,
            # instead of sending their next reads to Redis in one burst.
            ttl *= 1 - self._jitter * random.random()  # noqa: S311 -- spread, not secrecy.
        now = self.timer()
        self._slots[key] = Slot(entry, now + ttl * self._refresh_ahead, now + ttl)

    def delete(self, key: int) -> None:
        self._slots.pop(key, None)

    def retime(self, ttl: float, negative_ttl: float) -> None:
        """TTLs of the entries set from now on (those already in keep theirs)."""
        self._ttl = ttl
        self._negative_ttl = negative_ttl

    def clear(self) -> None:
        self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)
