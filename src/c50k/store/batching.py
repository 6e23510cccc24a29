"""Reads of one item by id from one server, coalesced while its pool is busy.

While a connection is free, a read runs alone: one prepared statement, one round trip. While
every connection is taken, reads wait together, and the next connection that comes free takes
all of them in one query. Under a loaded event loop a statement holds its connection for
several turns of the loop (send; the answer; the release, which asyncpg runs in a task of its
own), and a turn takes long when thousands of connections are held: one query per read made
the pool the queue, and 2 s pool timeouts turned cache misses into errors (BENCHMARKS.md,
db-mixed). One query for the whole queue keeps the pool's hold per read small.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from c50k.store.servers import Server

GET = "SELECT body FROM items WHERE id = $1"
GET_MANY = "SELECT id, body FROM items WHERE id = ANY($1::bigint[])"

# Ids in one query. The server writes its whole answer before the statement ends, and under a
# loaded loop the client reads it late: an answer larger than the socket's buffer kept the
# server waiting past its 2 s statement_timeout (batches of every waiting read, at 50,000
# connections). A hundred items (~35 KB) fit.
MAX_BATCH = 100
Waiting = dict[int, list["asyncio.Future[str | None]"]]


class BatchedReads:
    def __init__(self, server: Server) -> None:
        self._server = server
        self._waiting: Waiting = {}
        # The one batch waiting for a connection; a batch running on one takes no more reads.
        self._next: asyncio.Task[None] | None = None

    async def get(self, item_id: int) -> str | None:
        """The item's JSON text, or None when the server has no such item."""
        if not self._waiting and not self._server.busy:
            body: str | None = await self._server.run(lambda conn: conn.fetchval(GET, item_id))
            return body
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(item_id, []).append(future)
        if self._next is None:
            self._next = asyncio.create_task(self._run_batch(), name="c50k-read-batch")
        return await future

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._next

    def _take(self) -> Waiting:
        """This batch's reads: the oldest waiting, at most MAX_BATCH ids. Those left, and
        later ones, go in the next batch."""
        if len(self._waiting) <= MAX_BATCH:
            taken, self._waiting = self._waiting, {}
        else:
            taken = {
                item_id: self._waiting.pop(item_id) for item_id in list(self._waiting)[:MAX_BATCH]
            }
        self._next = None
        if self._waiting:
            self._next = asyncio.create_task(self._run_batch(), name="c50k-read-batch")
        return taken

    async def _run_batch(self) -> None:
        taken: Waiting = {}

        def statement(conn: Any) -> Any:
            nonlocal taken
            if not taken:  # Run again on a fresh connection: the same reads.
                taken = self._take()
            return conn.fetch(GET_MANY, list(taken))

        try:
            rows = await self._server.run(statement)
        except Exception as exc:
            # No connection in time, or the server failed: each read fails as it would
            # alone (a replica's readers then go to the primary).
            for futures in (taken or self._take()).values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for futures in (taken or self._take()).values():
                for future in futures:
                    future.cancel()
            raise
        bodies = {row[0]: row[1] for row in rows}
        for item_id, futures in taken.items():
            for future in futures:
                if not future.done():  # Its reader gave up (the request deadline).
                    future.set_result(bodies.get(item_id))
