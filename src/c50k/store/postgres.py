"""The PostgreSQL store: shards, each a primary and streaming read replicas, one asyncpg pool
per server per worker (servers.py).

Writes go to the owning shard's primary. Reads go to a replica of the owning shard (see
routing.py) and fall back to the primary when the replica fails, so a replica going down
fails no request. Each worker watches its replicas' health and lag in the background.
SQLAlchemy's horizontal-sharding extension is not used: routing is one pure function, and a
session per shard is what its own documentation recommends first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from cachetools import TTLCache

from c50k.exceptions import StoreError, StoreUnavailable
from c50k.settings import PostgresSettings
from c50k.store import consistency
from c50k.store.base import Page, StoredItem, page_of
from c50k.store.batching import BatchedReads
from c50k.store.consistency import ConsistencyToken
from c50k.store.routing import (
    ReplicaHealth,
    build_slot_map,
    choose_replica,
    shard_of,
    turns,
)
from c50k.store.servers import STORE, Server
from c50k.types import ItemJson, PoolStats

logger = logging.getLogger(__name__)

# One round trip each: the procedures (migration 0002) write, commit, and return the commit's
# LSN for the consistency token.
PUT = "CALL c50k_put_item($1, $2)"
DELETE = "CALL c50k_delete_item($1)"
PAGE = "SELECT id, body FROM items WHERE id > $1 ORDER BY id LIMIT $2"
REPLICA_STATE = (
    "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn(), '0/0'), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)
PRIMARY_STATE = "SELECT pg_is_in_recovery(), pg_current_wal_lsn()"
BUDGET = (
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int"
)
T = TypeVar("T")
UNHEALTHY = ReplicaHealth(healthy=False, lag_seconds=float("inf"), replay_lsn=0)


class ConnectionBudgetError(StoreError):
    pass


@dataclass
class Shard:
    index: int
    primary: Server
    replicas: list[Server]
    health: list[ReplicaHealth]
    # (monotonic time, primary's WAL position) of recent health checks: a replica's lag is
    # how long ago the primary was where the replica is now.
    history: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    # Each server's reads of one item, coalesced while its pool is busy.
    batches: dict[str, BatchedReads] = field(init=False)

    def __post_init__(self) -> None:
        self.batches = {server.label: BatchedReads(server) for server in self.servers}

    @property
    def servers(self) -> tuple[Server, ...]:
        return (self.primary, *self.replicas)


@dataclass
class ReplicaView:
    shard: int
    server: str
    health: ReplicaHealth


@dataclass
class StoreCounters:
    """What the pools did in this worker, for the benchmark and the metrics."""

    # By (shard, role of the server that answered).
    reads: Counter[tuple[int, str]] = field(default_factory=Counter)


class PostgresStore:
    name = STORE

    def __init__(self, settings: PostgresSettings, workers: int = 1) -> None:
        self._settings = settings
        self._workers = workers
        self._slot_map = build_slot_map(settings.shards, settings.slots)
        self._shards: list[Shard] = []
        self._monitor: asyncio.Task[None] | None = None
        # Items this worker wrote lately, with their commit LSN: read only from a server that
        # replayed it (read-your-writes for clients that send no token).
        self._recent_writes: TTLCache[int, int] = TTLCache(
            maxsize=100_000, ttl=max(settings.read_your_writes_seconds, 0.001)
        )
        self.stats = StoreCounters()
        self._wait_observer: Callable[[str, str, float], None] | None = None

    async def open(self) -> None:
        for index, shard in enumerate(self._settings.shards):
            primary = Server(index, "primary", shard.primary, self._settings)
            replicas = [Server(index, "replica", dsn, self._settings) for dsn in shard.replicas]
            self._shards.append(Shard(index, primary, replicas, [UNHEALTHY for _ in replicas]))
        try:
            # Pools open no connection yet (min_size 0): this cannot fail on a server down.
            await asyncio.gather(*(s.open() for shard in self._shards for s in shard.servers))
            self._observe_waits()
            await self._check_budgets()
            await asyncio.gather(*(self._refresh(shard) for shard in self._shards))
        except BaseException:
            await self.close()
            raise
        self._monitor = asyncio.create_task(self._watch(), name="c50k-replica-health")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        shards, self._shards = self._shards, []
        await asyncio.gather(*(b.close() for shard in shards for b in shard.batches.values()))
        await asyncio.gather(*(server.close() for shard in shards for server in shard.servers))

    async def _check_budgets(self) -> None:
        """Refuse to start a fleet that would open more connections than a server accepts."""
        per_pool = self._settings.pool_size + self._settings.max_overflow
        wanted = self._workers * per_pool
        for shard in self._shards:
            for server in shard.servers:
                if self._settings.pgbouncer and server.role == "primary":
                    continue  # PgBouncer's own max_client_conn applies; it pools for us.
                try:
                    row = await server.run(lambda conn: conn.fetchrow(BUDGET))
                except StoreUnavailable as exc:
                    # Start anyway: a down replica's reads go elsewhere, a down primary's
                    # shard answers reads from replicas and /ready says what is missing.
                    logger.warning("connection budget not checked: %s", exc)
                    continue
                allowed = int(row[0]) - int(row[1])
                if wanted > allowed:
                    raise ConnectionBudgetError(
                        self.name,
                        f"{server.label} accepts {allowed} client connections "
                        f"(max_connections {row[0]} - {row[1]} reserved), but "
                        f"{self._workers} workers x (pool_size {self._settings.pool_size} + "
                        f"max_overflow {self._settings.max_overflow}) = {wanted} could open; "
                        "lower the pool or raise max_connections",
                    )

    def _shard(self, item_id: int) -> Shard:
        return self._shards[shard_of(item_id, self._slot_map)]

    def _reader(self, shard: Shard, item_id: int | None) -> Server:
        if not shard.replicas:
            return shard.primary
        token = consistency.read_after.get()
        min_lsn = token.lsn if token is not None and token.shard == shard.index else 0
        if item_id is not None and self._recent_writes:  # Empty unless this worker wrote.
            min_lsn = max(min_lsn, self._recent_writes.get(item_id, 0))
        chosen = choose_replica(
            shard.health, self._settings.max_replica_lag_seconds, min_lsn, next(turns)
        )
        return shard.primary if chosen is None else shard.replicas[chosen]

    async def _read(
        self, shard: Shard, item_id: int | None, read: Callable[[Server], Awaitable[T]]
    ) -> T:
        server = self._reader(shard, item_id)
        if server.role == "replica":
            try:
                result = await read(server)
                self.stats.reads[shard.index, "replica"] += 1
                return result
            except StoreUnavailable as exc:
                # Out of rotation until the next health check finds it well again.
                shard.health[shard.replicas.index(server)] = UNHEALTHY
                logger.warning("replica read failed, the primary answers: %s", exc)
        result = await read(shard.primary)
        self.stats.reads[shard.index, "primary"] += 1
        return result

    async def get(self, item_id: int) -> ItemJson | None:
        shard = self._shard(item_id)
        body = await self._read(shard, item_id, lambda s: shard.batches[s.label].get(item_id))
        return None if body is None else body.encode()

    async def _write(self, item_id: int, statement: Any, *, idempotent: bool) -> Any:
        """One CALL: the write, its commit, and the commit's LSN."""
        shard = self._shard(item_id)
        row = await shard.primary.run(statement, idempotent=idempotent)
        lsn: int = row["commit_lsn"]  # asyncpg reads a pg_lsn as its 64-bit integer.
        self._recent_writes[item_id] = lsn
        consistency.last_write.set(ConsistencyToken(shard.index, lsn))
        return row

    async def put(self, item_id: int, body: ItemJson) -> None:
        # Idempotent: run again after a broken connection, it leaves the same item.
        text = body.decode()
        await self._write(item_id, lambda conn: conn.fetchrow(PUT, item_id, text), idempotent=True)

    async def delete(self, item_id: int) -> bool:
        # Not run again once it may have reached the server: a second run would answer "not
        # found" for the item the first one deleted.
        row = await self._write(
            item_id, lambda conn: conn.fetchrow(DELETE, item_id), idempotent=False
        )
        return bool(row["deleted"])

    async def page(self, after: int, limit: int) -> Page:
        """Scatter-gather: the next `limit + 1` ids of every shard, read in parallel and merged
        by id; the cursor is the last id, the same on every shard."""

        def read(server: Server) -> Awaitable[list[Any]]:
            return server.run(lambda conn: conn.fetch(PAGE, after, limit + 1))

        parts: Sequence[list[Any]] = await asyncio.gather(
            *(self._read(s, None, read) for s in self._shards)
        )
        merged = heapq.merge(*parts, key=lambda row: row[0])
        rows = itertools.islice(merged, limit + 1)
        items = [StoredItem(int(row[0]), row[1].encode()) for row in rows]
        return page_of(items, limit)

    # What the metrics read (observability.metrics.ReplicatedStore).
    def pool_stats(self) -> Iterator[PoolStats]:
        totals: dict[tuple[int, str], list[int]] = {}
        for shard in self._shards:
            for server in shard.servers:
                size, in_use = server.stats()
                sums = totals.setdefault((shard.index, server.role), [0, 0, 0])
                sums[0] += size
                sums[1] += in_use
                sums[2] += max(0, size - self._settings.pool_size)
        for (shard_index, role), (size, checked_out, overflow) in totals.items():
            yield PoolStats(str(shard_index), role, size, checked_out, overflow)

    def reads_by_shard_and_role(self) -> Iterator[tuple[str, str, int]]:
        for (shard_index, role), total in self.stats.reads.items():
            yield str(shard_index), role, total

    def replication_lags(self) -> Iterator[tuple[str, str, float]]:
        for view in self.replicas():
            if view.health.healthy:  # Down is a health fact, not an infinite lag.
                yield str(view.shard), view.server, view.health.lag_seconds

    def observe_pool_waits(self, observer: Callable[[str, str, float], None]) -> None:
        self._wait_observer = observer
        self._observe_waits()

    def _observe_waits(self) -> None:
        if self._wait_observer is not None:
            for shard in self._shards:
                for server in shard.servers:
                    server.observe_wait = partial(
                        self._wait_observer, str(shard.index), server.role
                    )

    def replicas(self) -> list[ReplicaView]:
        """Every replica as the last health check saw it (status, metrics, tests)."""
        return [
            ReplicaView(shard.index, replica.name, health)
            for shard in self._shards
            for replica, health in zip(shard.replicas, shard.health, strict=True)
        ]

    async def check(self) -> None:
        """Ready while every shard has a server that answers: reads go on from a replica
        while a primary is down; writes to that shard answer 503 meanwhile."""
        for shard in self._shards:
            if not any(h.healthy for h in shard.health):
                await shard.primary.run(lambda conn: conn.fetchval("SELECT 1"))

    async def _watch(self) -> None:
        recycled = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.health_interval_seconds)
            if time.monotonic() - recycled >= self._settings.pool_recycle_seconds:
                # Connections older than this are replaced as they come back (asyncpg's
                # pool has no age limit of its own, only an idle one).
                recycled = time.monotonic()
                await asyncio.gather(
                    *(server.recycle() for shard in self._shards for server in shard.servers)
                )
            await asyncio.gather(*(self._refresh(shard) for shard in self._shards))

    async def _refresh(self, shard: Shard) -> None:
        timeout = self._settings.connect_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                in_recovery, lsn = await shard.primary.run(
                    lambda conn: conn.fetchrow(PRIMARY_STATE)
                )
            if not in_recovery:
                shard.history.append((time.monotonic(), int(lsn)))
        except (StoreError, TimeoutError):
            pass  # The replicas' own view of their lag is all there is now.
        for index, replica in enumerate(shard.replicas):
            shard.health[index] = await self._replica_health(shard, replica)

    async def _replica_health(self, shard: Shard, replica: Server) -> ReplicaHealth:
        try:
            async with asyncio.timeout(self._settings.connect_timeout_seconds):
                in_recovery, replay, lag = await replica.run(
                    lambda conn: conn.fetchrow(REPLICA_STATE)
                )
        except (StoreError, TimeoutError):
            return UNHEALTHY
        if not in_recovery:
            return UNHEALTHY  # Promoted: not this shard's replica any more.
        replay_lsn = int(replay)
        return ReplicaHealth(True, max(float(lag), _lag_behind(shard, replay_lsn)), replay_lsn)


def _lag_behind(shard: Shard, replay_lsn: int) -> float:
    """Seconds since the primary was last at or before `replay_lsn`, from the recent checks;
    0 when the replica has caught up with the latest one. Catches a replica whose stream
    stopped, which its own receive-versus-replay view reports as 0."""
    if not shard.history or replay_lsn >= shard.history[-1][1]:
        return 0.0
    now = time.monotonic()
    for seen_at, primary_lsn in reversed(shard.history):
        if primary_lsn <= replay_lsn:
            return now - seen_at
    return now - shard.history[0][0]
