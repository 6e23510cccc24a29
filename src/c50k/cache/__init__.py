"""Caches in front of the item sources."""

from c50k.cache.memory import MemoryCache
from c50k.cache.readthrough import ReadThroughCache
from c50k.cache.singleflight import SingleFlight

__all__ = ["MemoryCache", "ReadThroughCache", "SingleFlight"]
