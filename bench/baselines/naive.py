"""Baseline "naive": GET /items/{item_id} the way tutorials write it.

A new httpx.AsyncClient per request (`async with`, timeout 2 s), both upstream calls with
asyncio.gather, and FastAPI's default JSON responses (jsonable_encoder, then JSONResponse's
json.dumps). Nothing is pooled, cached or tuned: this is the code c50k is compared against
first, so it is written as such code usually is, not as a straw man.

Run it with gunicorn's defaults except the worker class and the worker count:

    gunicorn --chdir bench/baselines -k uvicorn_worker.UvicornWorker -w 5 -b 127.0.0.1:8000 \
        naive:app

-w is 2 x cores + 1 (5 on 2 cores) because that is what tutorials and gunicorn's own docs
recommend; that rule was written for synchronous workers, which is part of what is measured.

UPSTREAM_URL (a template with {id}, e.g. http://127.0.0.1:9000/posts/{id}) is read in the
lifespan, when a worker starts, so importing this module needs no environment.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A missing variable fails the worker's boot with a KeyError naming it.
    app.state.upstream_url = os.environ["UPSTREAM_URL"]
    yield


app = FastAPI(lifespan=lifespan)


async def fetch_item(client: httpx.AsyncClient, url: str) -> Any:
    try:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status == 404:
            return {"error": "Item not found"}
        return {"error": f"External service returned status {status}"}
    except httpx.TransportError:
        # Connect errors, resets and timeouts alike.
        return {"error": "External service unavailable"}
    except Exception:
        # Invalid JSON and anything else: one side failing must not fail the whole answer.
        return {"error": "An unexpected error occurred"}


# response_model=None: without it FastAPI would turn the return annotation (there for mypy)
# into a response model and serialize through pydantic, which untyped tutorial code never does.
@app.get("/items/{item_id}", response_model=None)
async def get_item(item_id: int, request: Request) -> dict[str, Any]:
    template: str = request.app.state.upstream_url
    async with httpx.AsyncClient(timeout=2.0) as client:
        main_item, related_item = await asyncio.gather(
            fetch_item(client, template.replace("{id}", str(item_id))),
            fetch_item(client, template.replace("{id}", str(item_id + 1))),
        )
    return {"main_item": main_item, "related_item": related_item}


@app.get("/health", response_model=None)
async def health() -> dict[str, str]:
    return {"status": "ok"}
