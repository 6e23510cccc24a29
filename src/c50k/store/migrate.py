"""Schema migrations with Alembic, applied to every shard's primary (replicas follow through
replication), and what `c50k db status` shows of each shard."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from c50k.settings import PostgresSettings
from c50k.store.routing import parse_lsn
from c50k.store.servers import server_name

MIGRATIONS = Path(__file__).parent / "migrations"
STATUS_TIMEOUT_SECONDS = 3.0


def engine_url(dsn: str) -> str:
    """postgresql://... as SQLAlchemy's asyncpg URL (Alembic runs on SQLAlchemy)."""
    _scheme, _, rest = dsn.partition("://")
    return f"postgresql+asyncpg://{rest}"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates "%": a password with one must not break the URL.
    config.set_main_option("sqlalchemy.url", engine_url(dsn).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/")).get_current_head()


def upgrade(settings: PostgresSettings, revision: str = "head") -> list[str]:
    """Upgrade every shard's primary to `revision`; the names of the servers upgraded.

    Alembic's environment runs its own event loop, so each upgrade runs in a thread of its
    own: callable from a running loop too (the tests, an embedding service)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="c50k-migrate") as executor:
        for shard in settings.shards:
            executor.submit(command.upgrade, alembic_config(shard.primary), revision).result()
    return [server_name(shard.primary) for shard in settings.shards]


@dataclass(frozen=True)
class ServerStatus:
    shard: int
    role: str
    server: str
    reachable: bool
    detail: str  # The error, or "streaming" / "in recovery" / "primary".
    revision: str | None = None
    lag_seconds: float | None = None
    lag_bytes: int | None = None


async def _server_status(shard: int, role: str, dsn: str, primary_lsn: str | None) -> ServerStatus:
    name = server_name(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=STATUS_TIMEOUT_SECONDS, statement_cache_size=0)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return ServerStatus(shard, role, name, False, f"unreachable: {exc}")
    try:
        revision = None
        if await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            revision = await conn.fetchval("SELECT version_num FROM alembic_version")
        if role == "primary":
            recovering = await conn.fetchval("SELECT pg_is_in_recovery()")
            detail = "in recovery (not a primary)" if recovering else "primary"
            return ServerStatus(shard, role, name, True, detail, revision)
        row = await conn.fetchrow(
            "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'not streaming'),"
            " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
            " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END,"
            " pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::bigint",
            None if primary_lsn is None else parse_lsn(primary_lsn),  # asyncpg: pg_lsn is int.
        )
        assert row is not None  # noqa: S101 -- one row, always.
        lag = None if row[1] is None else float(row[1])
        lag_bytes = None if row[2] is None else max(0, int(row[2]))
        return ServerStatus(shard, role, name, True, str(row[0]), revision, lag, lag_bytes)
    finally:
        await conn.close()


async def _primary_lsn(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=STATUS_TIMEOUT_SECONDS, statement_cache_size=0)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return None
    try:
        lsn: str = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        return lsn
    except asyncpg.PostgresError:
        return None  # In recovery: no current WAL position of its own.
    finally:
        await conn.close()


async def status(settings: PostgresSettings) -> list[ServerStatus]:
    async def one_shard(index: int) -> list[ServerStatus]:
        shard = settings.shards[index]
        lsn = await _primary_lsn(shard.primary)
        return list(
            await asyncio.gather(
                _server_status(index, "primary", shard.primary, None),
                *(_server_status(index, "replica", dsn, lsn) for dsn in shard.replicas),
            )
        )

    per_shard = await asyncio.gather(*(one_shard(i) for i in range(len(settings.shards))))
    return [row for rows in per_shard for row in rows]
