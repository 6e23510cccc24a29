"""Baseline "straightforward": GET /items/{item_id} done the obvious right way in an afternoon.

One aiohttp.ClientSession per worker, opened in the lifespan and closed on shutdown, so
upstream connections are pooled and kept alive; a 2 s total timeout per call; orjson for the
answer; gunicorn with one UvicornWorker per core and a 75 s keep-alive. No cache, no store,
no connection budget, no tuning of aiohttp's pool: its default connector holds at most 100
connections per session, and a call waiting for one counts against its 2 s.

    gunicorn --chdir bench/baselines -k uvicorn_worker.UvicornWorker -w 2 --keep-alive 75 \
        -b 127.0.0.1:8000 straightforward:app

(-w is the CPU count: 2 on this machine.) UPSTREAM_URL (a template with {id}) is read in the
lifespan, when a worker starts, next to the session it configures.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI, Request, Response

UNAVAILABLE = {"error": "External service unavailable"}
NOT_FOUND = {"error": "Item not found"}
UNEXPECTED = {"error": "An unexpected error occurred"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A missing variable fails the worker's boot with a KeyError naming it.
    app.state.upstream_url = os.environ["UPSTREAM_URL"]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    app.state.session = session
    try:
        yield
    finally:
        await session.close()


app = FastAPI(lifespan=lifespan)


async def fetch_item(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url) as response:
            if response.status == 404:
                return NOT_FOUND
            if not 200 <= response.status < 300:
                return {"error": f"External service returned status {response.status}"}
            return orjson.loads(await response.read())
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
        # Refused, reset, cut short or too slow: the upstream is not there for us.
        return UNAVAILABLE
    except Exception:
        # Invalid JSON and anything else: one side failing must not fail the whole answer.
        return UNEXPECTED


@app.get("/items/{item_id}")
async def get_item(item_id: int, request: Request) -> Response:
    template: str = request.app.state.upstream_url
    session: aiohttp.ClientSession = request.app.state.session
    main_item, related_item = await asyncio.gather(
        fetch_item(session, template.replace("{id}", str(item_id))),
        fetch_item(session, template.replace("{id}", str(item_id + 1))),
    )
    body = orjson.dumps({"main_item": main_item, "related_item": related_item})
    return Response(body, media_type="application/json")


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
