"""The PostgreSQL store: shards, each a primary and streaming read replicas, on SQLAlchemy 2's
asyncio engines over asyncpg, one pooled engine per server per worker.

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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from cachetools import TTLCache
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from c50k.exceptions import StoreError, StoreUnavailable
from c50k.settings import PostgresSettings
from c50k.store import consistency
from c50k.store.base import Page, StoredItem, page_of
from c50k.store.consistency import ConsistencyToken
from c50k.store.routing import (
    ReplicaHealth,
    build_slot_map,
    choose_replica,
    parse_lsn,
    shard_of,
    turns,
)
from c50k.types import ItemJson, PoolStats

logger = logging.getLogger(__name__)

GET = text("SELECT body FROM items WHERE id = :id")
PUT = text(
    "INSERT INTO items (id, body) VALUES (:id, :body) "
    "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
)
DELETE = text("DELETE FROM items WHERE id = :id RETURNING id")
PAGE = text("SELECT id, body FROM items WHERE id > :after ORDER BY id LIMIT :limit")
# After our commit is flushed, the server's WAL write position is at or past its record.
COMMIT_LSN = text("SELECT pg_current_wal_lsn()::text")
REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, '0/0'), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)
PRIMARY_STATE = text("SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text")
BUDGET = text(
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int"
)
UNHEALTHY = ReplicaHealth(healthy=False, lag_seconds=float("inf"), replay_lsn=0)


class ConnectionBudgetError(StoreError):
    pass


def unavailable(exc: BaseException) -> bool:
    """Whether a failure means "this server cannot answer now" (retry elsewhere or later),
    as opposed to a bug or bad data. Decided on typed errors and SQLSTATE classes only."""
    if isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError):
        return True  # Pool exhausted, connect refused or reset, command timeout.
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code: str | None
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code is None:
            return True  # No answer from a server at all: the connection failed.
        # 08: connection exceptions; 57: operator intervention (shutdown, statement timeout,
        # "starting up"); 53: out of resources; 25006: a primary that became read-only.
        return bool(code.startswith(("08", "57", "53")) or code == "25006")
    return False


def engine_url(dsn: str) -> str:
    """postgresql://... as SQLAlchemy's asyncpg URL."""
    _scheme, _, rest = dsn.partition("://")
    return f"postgresql+asyncpg://{rest}"


def server_name(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}"


@dataclass
class Server:
    dsn: str
    role: str  # "primary" or "replica"
    engine: AsyncEngine

    @property
    def name(self) -> str:
        return server_name(self.dsn)


@dataclass
class Shard:
    index: int
    primary: Server
    replicas: list[Server]
    health: list[ReplicaHealth]
    # (monotonic time, primary's WAL position) of recent health checks: a replica's lag is
    # how long ago the primary was where the replica is now.
    history: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def label(self, server: Server) -> str:
        return f"shard {self.index} {server.role} {server.name}"


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
    name = "postgres"

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

    def _engine(self, dsn: str) -> AsyncEngine:
        s = self._settings
        connect_args: dict[str, Any] = {"timeout": s.connect_timeout_seconds}
        if s.pgbouncer:
            # PgBouncer in transaction mode hands each transaction any server connection:
            # asyncpg's cached prepared statements would be missing or clash there. No cache,
            # and a unique name for each statement (SQLAlchemy's recipe); PgBouncer also
            # refuses unknown startup parameters, so statement_timeout is set on the role.
            connect_args |= {
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
            }
        else:
            timeout_ms = str(int(s.statement_timeout_seconds * 1000))
            connect_args["server_settings"] = {
                "statement_timeout": timeout_ms,
                "application_name": "c50k",
            }
        return create_async_engine(
            engine_url(dsn),
            pool_size=s.pool_size,
            max_overflow=s.max_overflow,
            pool_timeout=s.pool_timeout_seconds,
            pool_recycle=s.pool_recycle_seconds,
            pool_pre_ping=s.pool_pre_ping,
            connect_args=connect_args,
        )

    async def open(self) -> None:
        for index, shard in enumerate(self._settings.shards):
            primary = Server(shard.primary, "primary", self._engine(shard.primary))
            replicas = [Server(dsn, "replica", self._engine(dsn)) for dsn in shard.replicas]
            health = [UNHEALTHY for _ in replicas]
            self._shards.append(Shard(index, primary, replicas, health))
        try:
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
        # dispose() waits for checked-out connections to come back, then closes the pool.
        engines = [s.engine for shard in self._shards for s in (shard.primary, *shard.replicas)]
        self._shards.clear()
        await asyncio.gather(*(engine.dispose() for engine in engines))

    async def _check_budgets(self) -> None:
        """Refuse to start a fleet that would open more connections than a server accepts."""
        per_engine = self._settings.pool_size + self._settings.max_overflow
        wanted = self._workers * per_engine
        for shard in self._shards:
            for server in (shard.primary, *shard.replicas):
                if self._settings.pgbouncer and server.role == "primary":
                    continue  # PgBouncer's own max_client_conn applies; it pools for us.
                try:
                    async with self._connect(shard, server) as conn:
                        row = (await conn.execute(BUDGET)).one()
                except StoreUnavailable as exc:
                    # Start anyway: a down replica's reads go elsewhere, a down primary's
                    # shard answers reads from replicas and /ready says what is missing.
                    logger.warning("connection budget not checked: %s", exc)
                    continue
                allowed = int(row[0]) - int(row[1])
                if wanted > allowed:
                    raise ConnectionBudgetError(
                        self.name,
                        f"{shard.label(server)} accepts {allowed} client connections "
                        f"(max_connections {row[0]} - {row[1]} reserved), but "
                        f"{self._workers} workers x (pool_size {self._settings.pool_size} + "
                        f"max_overflow {self._settings.max_overflow}) = {wanted} could open; "
                        "lower the pool or raise max_connections",
                    )

    @contextlib.asynccontextmanager
    async def _connect(self, shard: Shard, server: Server) -> AsyncIterator[AsyncConnection]:
        started = time.perf_counter()
        try:
            async with server.engine.connect() as conn:
                waited = time.perf_counter() - started
                if self._wait_observer is not None:
                    self._wait_observer(str(shard.index), server.role, waited)
                yield conn
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            if unavailable(exc):
                raise StoreUnavailable(self.name, f"{shard.label(server)}: {exc}") from exc
            raise StoreError(self.name, f"{shard.label(server)}: {exc}") from exc

    def _shard(self, item_id: int) -> Shard:
        return self._shards[shard_of(item_id, self._slot_map)]

    def _reader(self, shard: Shard, item_id: int | None) -> Server:
        token = consistency.read_after.get()
        min_lsn = token.lsn if token is not None and token.shard == shard.index else 0
        if item_id is not None:
            min_lsn = max(min_lsn, self._recent_writes.get(item_id, 0))
        chosen = choose_replica(
            shard.health, self._settings.max_replica_lag_seconds, min_lsn, next(turns)
        )
        return shard.primary if chosen is None else shard.replicas[chosen]

    async def _read(self, shard: Shard, item_id: int | None, query: Any, **params: Any) -> Any:
        server = self._reader(shard, item_id)
        if server.role == "replica":
            try:
                async with self._connect(shard, server) as conn:
                    result = (await conn.execute(query, params)).all()
                self.stats.reads[shard.index, "replica"] += 1
                return result
            except StoreUnavailable as exc:
                # Out of rotation until the next health check finds it well again.
                shard.health[shard.replicas.index(server)] = UNHEALTHY
                logger.warning("replica read failed, the primary answers: %s", exc)
        async with self._connect(shard, shard.primary) as conn:
            result = (await conn.execute(query, params)).all()
        self.stats.reads[shard.index, "primary"] += 1
        return result

    async def get(self, item_id: int) -> ItemJson | None:
        rows = await self._read(self._shard(item_id), item_id, GET, id=item_id)
        return rows[0][0].encode() if rows else None

    async def _write(self, item_id: int, query: Any, **params: Any) -> list[Any]:
        shard = self._shard(item_id)
        async with self._connect(shard, shard.primary) as conn:
            async with conn.begin():
                result = await conn.execute(query, params)
                rows = list(result.all()) if result.returns_rows else []
            lsn = parse_lsn((await conn.execute(COMMIT_LSN)).scalar_one())
        self._recent_writes[item_id] = lsn
        consistency.last_write.set(ConsistencyToken(shard.index, lsn))
        return rows

    async def put(self, item_id: int, body: ItemJson) -> None:
        await self._write(item_id, PUT, id=item_id, body=body.decode())

    async def delete(self, item_id: int) -> bool:
        return bool(await self._write(item_id, DELETE, id=item_id))

    async def page(self, after: int, limit: int) -> Page:
        """Scatter-gather: the next `limit + 1` ids of every shard, read in parallel and merged
        by id; the cursor is the last id, the same on every shard."""
        parts: Sequence[list[Any]] = await asyncio.gather(
            *(self._read(s, None, PAGE, after=after, limit=limit + 1) for s in self._shards)
        )
        merged = heapq.merge(*parts, key=lambda row: row[0])
        rows = itertools.islice(merged, limit + 1)
        items = [StoredItem(int(row[0]), row[1].encode()) for row in rows]
        return page_of(items, limit)

    # What the metrics read (observability.metrics.ReplicatedStore).
    def pool_stats(self) -> Iterator[PoolStats]:
        totals: dict[tuple[int, str], list[int]] = {}
        for shard in self._shards:
            for server in (shard.primary, *shard.replicas):
                pool = server.engine.pool
                sums = totals.setdefault((shard.index, server.role), [0, 0, 0])
                sums[0] += pool.size()  # type: ignore[attr-defined]  # QueuePool's own.
                sums[1] += pool.checkedout()  # type: ignore[attr-defined]
                sums[2] += max(0, pool.overflow())  # type: ignore[attr-defined]
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
                async with self._connect(shard, shard.primary) as conn:
                    await conn.execute(text("SELECT 1"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_interval_seconds)
            await asyncio.gather(*(self._refresh(shard) for shard in self._shards))

    async def _refresh(self, shard: Shard) -> None:
        timeout = self._settings.connect_timeout_seconds
        try:
            async with asyncio.timeout(timeout), self._connect(shard, shard.primary) as conn:
                in_recovery, lsn = (await conn.execute(PRIMARY_STATE)).one()
            if not in_recovery:
                shard.history.append((time.monotonic(), parse_lsn(lsn)))
        except (StoreError, TimeoutError):
            pass  # The replicas' own view of their lag is all there is now.
        for index, replica in enumerate(shard.replicas):
            shard.health[index] = await self._replica_health(shard, replica)

    async def _replica_health(self, shard: Shard, replica: Server) -> ReplicaHealth:
        try:
            async with (
                asyncio.timeout(self._settings.connect_timeout_seconds),
                self._connect(shard, replica) as conn,
            ):
                in_recovery, replay, lag = (await conn.execute(REPLICA_STATE)).one()
        except (StoreError, TimeoutError):
            return UNHEALTHY
        if not in_recovery:
            return UNHEALTHY  # Promoted: not this shard's replica any more.
        replay_lsn = parse_lsn(replay)
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
