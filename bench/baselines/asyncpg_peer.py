"""Peer "asyncpg": GET /items/{item_id} from PostgreSQL at the driver's own speed.

What `c50k bench db` holds c50k's data path against: a raw ASGI app (no framework, no
middleware) under the same gunicorn + uvicorn worker, one asyncpg pool per worker with the pool
c50k opens per server (10-15 connections), and both ids fetched concurrently with
`pool.fetchval`, asyncpg's plainest call. It reads the one server in PEER_DSN (a primary, or a
replica for the replica step) and answers `{"main_item": ..., "related_item": ...}` with the
stored JSON text as it is, like c50k; an id that is not there is `{"error": "Item not found"}`.

    PEER_DSN=postgresql://postgres@127.0.0.1:5432/c50k \
    gunicorn --chdir bench/baselines -k uvicorn_worker.UvicornWorker -w 2 asyncpg_peer:app

PEER_POOL_RESET=none releases connections without asyncpg's reset query (the
`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` round trip that `pool.fetchval`
runs after each fetch by default), which is what c50k does; the default is asyncpg's own.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg

GET = "SELECT body FROM items WHERE id = $1"
NOT_FOUND = b'{"error":"Item not found"}'
HEALTHY = b'{"status":"ok"}'
POOL_MIN, POOL_MAX = 10, 15  # c50k's defaults: pool_size 10 + max_overflow 5.
JSON = [(b"content-type", b"application/json")]

pool: Any = None


async def no_reset(_connection: Any) -> None:
    pass


async def lifespan(receive: Any, send: Any) -> None:
    global pool  # noqa: PLW0603 -- one pool per worker process, opened at its start.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            reset = no_reset if os.environ.get("PEER_POOL_RESET") == "none" else None
            pool = await asyncpg.create_pool(
                os.environ["PEER_DSN"], min_size=POOL_MIN, max_size=POOL_MAX, reset=reset
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def fetch(item_id: int) -> bytes:
    body = await pool.fetchval(GET, item_id)
    return NOT_FOUND if body is None else body.encode()


async def answer(send: Any, status: int, body: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path: str = scope["path"]
    if path == "/health":
        await answer(send, 200, HEALTHY)
        return
    raw = path.removeprefix("/items/")
    if raw == path or not raw.isdigit():
        await answer(send, 404, b'{"detail":"Not Found"}')
        return
    item_id = int(raw)
    main_item, related_item = await asyncio.gather(fetch(item_id), fetch(item_id + 1))
    await answer(send, 200, b'{"main_item":%s,"related_item":%s}' % (main_item, related_item))
