"""One PostgreSQL server as a worker uses it: an asyncpg pool, and a statement run on it.

The request path talks to asyncpg directly; SQLAlchemy and Alembic keep the schema only
(docs/data-tier.md has the measurements behind the choice). What a statement costs here is
what the driver costs: one round trip with a prepared statement (asyncpg's per-connection
statement cache), no ping before it, no reset query after it, no greenlet hop.

A pooled connection is not tested before use. One that a server restart or the network broke
fails on use instead; then every connection of the pool is as likely dead, so the pool drops
them all and the statement runs once more on a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from c50k.exceptions import StoreError, StoreUnavailable
from c50k.settings import PostgresSettings

T = TypeVar("T")
STORE = "postgres"
# Errors that mean the connection itself is gone: the server went away (08: connection
# exceptions; 57P01/57P02: terminated by a shutdown or a crash) or the socket did.
BROKEN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
# Raised by the driver before it sends anything: a connection already closed (InterfaceError),
# or a protocol still busy with a failure the server reported on its own, such as "terminating
# connection due to unexpected postmaster exit" between two statements (InternalClientError).
UNSENT = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
# SQLSTATE classes of "this server cannot answer now": 08 connection, 57 operator intervention
# (shutdown, statement timeout, starting up), 53 out of resources; 25006: a read-only primary.
UNAVAILABLE_CLASSES = ("08", "57", "53")
READ_ONLY = "25006"
CLOSE_TIMEOUT_SECONDS = 5.0  # For borrowed connections to come back before closing.


def unavailable(exc: BaseException) -> bool:
    """Whether a failure means "this server cannot answer now" (retry elsewhere or later),
    as opposed to a bug or bad data. Decided on typed errors and SQLSTATE only."""
    if isinstance(exc, OSError | TimeoutError):
        return True  # Connect refused or reset, no pooled connection in time.
    if isinstance(exc, asyncpg.PostgresError):
        code = str(exc.sqlstate or "")
        return code.startswith(UNAVAILABLE_CLASSES) or code == READ_ONLY
    return False


def server_name(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}"


async def _keep_session(_connection: Any) -> None:
    """Given to the pool as its reset: asyncpg's default runs `pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL` on every release, a round trip per statement, to undo session
    state c50k never creates. The pool still rolls back a transaction left open."""


def pool_limit(settings: PostgresSettings) -> int:
    return settings.pool_size + settings.max_overflow


def pool_options(settings: PostgresSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        # Opened as reads need them, so a server that is down at start fails no worker; a
        # connection idle for asyncpg's default 5 minutes is closed.
        "min_size": 0,
        "max_size": pool_limit(settings),
        "timeout": settings.connect_timeout_seconds,
        "reset": _keep_session,
    }
    if settings.pgbouncer:
        # PgBouncer in transaction mode hands each transaction any server connection, and 1.18
        # does not track prepared statements: no statement cache, so each statement is parsed
        # unnamed and run before its Sync (asyncpg describes with Flush), on one server link.
        # PgBouncer also refuses unknown startup parameters: set statement_timeout on the role.
        options["statement_cache_size"] = 0
    else:
        options["server_settings"] = {
            "statement_timeout": str(int(settings.statement_timeout_seconds * 1000)),
            "application_name": "c50k",
        }
    return options


class Server:
    """A primary or a replica of one shard, with this worker's pool to it."""

    def __init__(self, shard: int, role: str, dsn: str, settings: PostgresSettings) -> None:
        self.shard = shard
        self.role = role  # "primary" or "replica"
        self.dsn = dsn
        self.name = server_name(dsn)
        self.label = f"shard {shard} {role} {self.name}"
        self._settings = settings
        self._pool: Any = None
        self._size = pool_limit(settings)
        self._taken = 0  # Connections statements of this worker hold or wait for now.
        # Seconds each statement waited for a pooled connection (the metrics' pool waits).
        self.observe_wait: Callable[[float], None] | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, **pool_options(self._settings))

    async def close(self) -> None:
        if self._pool is not None:
            # Waits for borrowed connections to come back, then closes; terminates on timeout.
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                self._pool.terminate()

    async def recycle(self) -> None:
        """Replace every connection as it next comes back or is next taken."""
        await self._pool.expire_connections()

    def stats(self) -> tuple[int, int]:
        """(open connections, connections in use)."""
        return int(self._pool.get_size()), min(self._taken, self._size)

    async def run(self, statement: Callable[[Any], Awaitable[T]], *, idempotent: bool = True) -> T:
        """`statement(connection)` on a pooled connection. A connection found broken is
        dropped with the rest of the pool and the statement runs once more on a fresh one:
        any statement when the driver refused it before sending (the connection was already
        closed), and an idempotent one also when it may have reached the server."""
        try:
            try:
                return await self._once(statement)
            except _Broken as broken:
                await self.recycle()
                if not (idempotent or broken.unsent):
                    raise broken.error from None
            return await self._once(statement)
        except _Broken as broken:
            raise self._failure(broken.error) from broken.error
        except (asyncpg.PostgresError, *UNSENT, OSError, TimeoutError) as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> StoreError:
        kind = StoreUnavailable if unavailable(exc) else StoreError
        return kind(STORE, f"{self.label}: {exc!r}")

    @property
    def busy(self) -> bool:
        """Every connection is taken: a statement now would wait for one."""
        return self._taken >= self._size

    async def _once(self, statement: Callable[[Any], Awaitable[T]]) -> T:
        started = time.perf_counter()
        busy = self.busy
        self._taken += 1  # From here on, so that statements of this same turn count it.
        try:
            if busy:
                # Only the wait for a connection is bounded here: a statement has its own
                # limits (the server's statement_timeout, the request deadline).
                async with asyncio.timeout(self._settings.pool_timeout_seconds):
                    connection = await self._pool.acquire()
            else:
                # A connection is free or may be opened (asyncpg's connect timeout bounds
                # that): no timer to arm, which would cost a third of what the statement does.
                connection = await self._pool.acquire()
        except BaseException:
            self._taken -= 1
            raise
        try:
            if self.observe_wait is not None:
                self.observe_wait(time.perf_counter() - started)
            return await statement(connection)
        except (*BROKEN, *UNSENT) as exc:
            if isinstance(exc, asyncpg.InterfaceError) and not _closed(connection):
                raise  # Misuse on a live connection: a bug, not a broken connection.
            if not _closed(connection):
                connection.terminate()  # Never back into the pool: its state is unknown.
            raise _Broken(exc) from exc
        finally:
            self._taken -= 1
            await self._pool.release(connection)


def _closed(connection: Any) -> bool:
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:
        return True  # Detached: the pool took the connection back when it closed.


class _Broken(Exception):
    """The connection a statement ran on is gone."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
        self.unsent = isinstance(error, UNSENT)
