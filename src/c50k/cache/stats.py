"""Counters of one worker's cache, as plain attributes: the metrics exporter reads them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CacheStats:
    local_hits: int = 0
    local_misses: int = 0
    redis_hits: int = 0
    redis_misses: int = 0
    redis_errors: int = 0  # Failed or timed-out commands.
    redis_skipped: int = 0  # Commands not sent because the breaker was open.
    loads: int = 0  # Loads from the store and upstream.
    lease_waits: int = 0  # Misses that waited for another loader's value.
    lease_timeouts: int = 0  # ... and loaded themselves when it did not come in time.
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    refresh_errors: int = 0
    invalidations_sent: int = 0
    invalidations_received: int = 0
    subscription_resets: int = 0  # (Re)subscriptions, each clearing the in-process layer.
