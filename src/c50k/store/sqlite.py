"""The embedded default store: one SQLite file in WAL mode, queried off the event loop.

aiosqlite runs each connection in its own thread, so a query never blocks the loop. Every
worker process opens its own connection; WAL lets them read while one of them writes, and
busy_timeout makes a writer wait for another instead of failing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import aiosqlite

from c50k.exceptions import StoreError, StoreUnavailable
from c50k.store.base import Page, StoredItem, page_of
from c50k.types import ItemJson

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    updated_at REAL NOT NULL
)
"""


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, busy_timeout_seconds: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout_seconds
        self._db: aiosqlite.Connection | None = None
        # Coroutines of a worker share the connection, and so its open transaction: without
        # this lock one writer's rollback undid another's uncommitted write, which then
        # committed nothing and answered 200 (a lost write).
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self._path, timeout=self._busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(self.name, f"cannot open {self._path}: {exc}") from exc
        try:
            # WAL: readers never wait for the writer. synchronous=FULL: a write answered 2xx
            # survives a power loss, not only a crash of the process.
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute(SCHEMA)
            await db.commit()
        except sqlite3.Error as exc:
            await db.close()
            raise StoreUnavailable(self.name, f"cannot prepare {self._path}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable(self.name, "store is not open")
        return self._db

    async def get(self, item_id: int) -> ItemJson | None:
        # One trip to the connection's thread (execute, fetch and close there): each trip
        # back to the event loop waits one loop iteration, seconds when the loop is saturated.
        try:
            rows = await self._conn.execute_fetchall(
                "SELECT body FROM items WHERE id = ?", (item_id,)
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        for row in rows:
            return bytes(row[0])
        return None

    async def put(self, item_id: int, body: ItemJson) -> None:
        async with self._write_lock:
            await self._put(item_id, body)

    async def _put(self, item_id: int, body: ItemJson) -> None:
        try:
            await self._conn.execute(
                "INSERT INTO items (id, body, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body, "
                "updated_at = excluded.updated_at",
                (item_id, body, time.time()),
            )
            await self._conn.commit()
        except sqlite3.Error as exc:
            await self._rollback()
            raise self._error(exc) from exc

    async def delete(self, item_id: int) -> bool:
        async with self._write_lock:
            return await self._delete(item_id)

    async def _delete(self, item_id: int) -> bool:
        try:
            cur = await self._conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
            await self._conn.commit()
        except sqlite3.Error as exc:
            await self._rollback()
            raise self._error(exc) from exc
        return cur.rowcount > 0

    async def page(self, after: int, limit: int) -> Page:
        try:
            async with self._conn.execute(
                "SELECT id, body FROM items WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1)
            ) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return page_of([StoredItem(int(r[0]), bytes(r[1])) for r in rows], limit)

    async def check(self) -> None:
        try:
            async with self._conn.execute("SELECT 1") as cur:
                await cur.fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _rollback(self) -> None:
        # The connection may already be unusable; the original error is what matters.
        with contextlib.suppress(sqlite3.Error):
            await self._conn.rollback()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        # OperationalError covers "locked", "busy" and I/O trouble: the client may retry.
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(self.name, str(exc))
        return StoreError(self.name, str(exc))
