"""Names for the types every tier shares, defined once and owned by none of them.

The cache, the store, the upstream client, the domain and the metrics all speak of items and of
what they read from one another; the shapes live here so that no tier imports another only for
a type (tests/unit/test_layout.py keeps the packages free of cycles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

# An item as compact JSON object text that includes its "id"; stores keep and return it
# verbatim, so a read never parses or re-serializes it.
ItemJson: TypeAlias = bytes


class Reads(Protocol):
    """Where the domain reads an item first (the item store)."""

    async def get(self, item_id: int) -> ItemJson | None: ...


class Upstream(Protocol):
    """Where the domain fetches an item no store holds (the upstream HTTP API)."""

    async def fetch(self, item_id: int) -> ItemJson: ...


@dataclass(frozen=True, slots=True)
class PoolStats:
    shard: str
    role: str  # "primary" or "replica"
    size: int
    checked_out: int
    overflow: int


class PoolStatsSource(Protocol):
    def pool_stats(self) -> Iterable[PoolStats]: ...


@runtime_checkable
class ReplicatedStore(PoolStatsSource, Protocol):
    """What the metrics read of a store with shards and replicas."""

    def reads_by_shard_and_role(self) -> Iterable[tuple[str, str, int]]: ...

    def replication_lags(self) -> Iterable[tuple[str, str, float]]: ...

    def observe_pool_waits(self, observer: Callable[[str, str, float], None]) -> None: ...


class AdmissionCounts(Protocol):
    """What the metrics read of a worker's admission control (api/shedding.py)."""

    in_flight: int
    observe_wait: Callable[[float], None] | None

    @property
    def shed(self) -> Mapping[str, int]: ...

    @property
    def shedding(self) -> bool: ...
