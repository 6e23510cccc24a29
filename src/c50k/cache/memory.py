"""The in-process cache layer: bounded by entries (least recently used goes), and by age.

Found items live `ttl` seconds; "not found" answers live the shorter `negative_ttl`, so a
burst of reads of a missing id costs one lookup, and a new item shows up soon after.
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


class MemoryCache:
    def __init__(
        self,
        max_items: int,
        ttl: float,
        negative_ttl: float,
        timer: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
    ) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._jitter = jitter
        self._entries: TLRUCache[int, Entry] = TLRUCache(
            maxsize=max_items, ttu=self._expires_at, timer=timer
        )

    def _expires_at(self, _key: int, entry: Entry, now: float) -> float:
        ttl = self._ttl if entry.body is not None else self._negative_ttl
        if self._jitter:
            # Shorter, never longer (the TTL is a bound): entries filled together expire apart,
            # instead of sending their next reads to Redis in one burst.
            ttl *= 1 - self._jitter * random.random()  # noqa: S311 -- spread, not secrecy.
        return now + ttl

    def get(self, key: int) -> Entry | None:
        return self._entries.get(key)

    def set(self, key: int, entry: Entry) -> None:
        if entry.body is None and self._negative_ttl <= 0:
            return
        self._entries[key] = entry

    def delete(self, key: int) -> None:
        self._entries.pop(key, None)

    def retime(self, ttl: float, negative_ttl: float) -> None:
        """TTLs of the entries set from now on (those already in keep theirs)."""
        self._ttl = ttl
        self._negative_ttl = negative_ttl

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
