"""The routes. Thin: input rules here, behaviour in c50k.items, statuses in c50k.api.errors."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BeforeValidator

from c50k.api.bodies import read_json_object
from c50k.api.fastpath import COMPLETE_HEADER, STALE_HEADER, aggregate_answer
from c50k.api.services import AppServices, Items
from c50k.exceptions import BadRequest, C50kError
from c50k.settings import MAX_ITEM_ID
from c50k.store import consistency

router = APIRouter()

JSON = "application/json"
HEALTH_BODY = b'{"status":"ok"}'
READY_TIMEOUT_SECONDS = 1.0


def _digits_only(value: object) -> object:
    # "1.0", "+1", " 1" and "1_000" would all parse as ints; an id is written one way only.
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("must be a non-negative integer written in decimal digits")
        if len(value) > len(str(MAX_ITEM_ID)):
            raise ValueError(f"must be at most {MAX_ITEM_ID}")
    return value


ItemId = Annotated[
    int,
    BeforeValidator(_digits_only),
    Path(ge=0, le=MAX_ITEM_ID, description="A non-negative signed 64-bit integer."),
]
ReadToken = Annotated[
    str | None,
    Header(
        alias=consistency.HEADER,
        description="The token of the client's own write: the answer includes that write.",
    ),
]


def _json(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status_code, media_type=JSON, headers=headers)


@router.get("/health", tags=["operations"], summary="Liveness: the process runs.")
async def health() -> Response:
    return _json(HEALTH_BODY)


@router.get(
    "/ready",
    tags=["operations"],
    summary="Readiness: store, cache and upstream client usable, and not draining.",
    responses={503: {"description": "Not ready; the failing checks are named."}},
)
async def ready(services: AppServices) -> Response:
    if services.lifecycle.draining:
        return _json(b'{"status":"draining"}', 503, {"Retry-After": "5"})
    checks: dict[str, str] = {"store": "ok", "cache": "ok", "upstream": "ok"}
    try:
        await asyncio.wait_for(services.store.check(), READY_TIMEOUT_SECONDS)
    except (C50kError, TimeoutError) as exc:
        checks["store"] = f"failed: {exc or 'timeout'}"
    if services.cache is None:
        checks["cache"] = "disabled"
    elif (redis := services.cache.redis) is not None:
        # Degraded, not failed: reads go to the store and upstream while Redis is away.
        if redis.breaker.state != "closed":
            checks["cache"] = f"degraded: redis breaker {redis.breaker.state}"
        elif not redis.subscribed:
            checks["cache"] = "degraded: not hearing invalidations (in-process TTL shortened)"
    if services.upstream is None:
        checks["upstream"] = "not configured"
    elif not services.upstream.usable():
        checks["upstream"] = "failed: client closed"
    failed = [name for name, state in checks.items() if state.startswith("failed")]
    if failed:
        body = {"status": "unavailable", "failed": failed, "checks": checks}
        return _json(orjson.dumps(body), 503, {"Retry-After": "1"})
    return _json(orjson.dumps({"status": "ready", "checks": checks}))


@router.get(
    "/items/{item_id}",
    tags=["items"],
    summary="An item and its related item (id + 1), resolved concurrently.",
    response_description=(
        '{"main_item": ..., "related_item": ...}; a side that failed is an error object. '
        "X-Items-Complete says whether both sides resolved."
    ),
)
async def get_item(item_id: ItemId, items: Items, token: ReadToken = None) -> Response:
    # Well-formed requests without a token are answered by ItemsFastPath before they get
    # here; this route validates the rest, reads after a token, and documents the endpoint.
    if token is not None:
        try:
            consistency.read_after.set(consistency.ConsistencyToken.parse(token))
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from exc
    aggregate = await items.aggregate(item_id)
    body, complete = aggregate_answer(aggregate)
    headers = {COMPLETE_HEADER: complete}
    if aggregate.stale is not None:
        headers[STALE_HEADER] = aggregate.stale
    return _json(body, headers=headers)


def _written(body: bytes, status_code: int = 200) -> Response:
    """The answer to a write, with its consistency token when the store gives one."""
    token = consistency.last_write.get()
    headers = {consistency.HEADER: str(token)} if token is not None else None
    if status_code == 204:
        return Response(status_code=204, headers=headers)
    return _json(body, status_code, headers)


@router.put(
    "/items/{item_id}",
    tags=["items"],
    summary="Create or replace an item.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"type": "object", "additionalProperties": True}}},
        }
    },
    responses={413: {"description": "Body too large"}, 415: {"description": "Not JSON"}},
)
async def put_item(item_id: ItemId, request: Request, services: AppServices) -> Response:
    fields = await read_json_object(request, services.settings.request.max_body_bytes)
    if "id" in fields and fields["id"] != item_id:
        raise BadRequest(422, f'Body "id" {fields["id"]!r} does not match the path id {item_id}')
    fields.pop("id", None)
    try:
        body = orjson.dumps({"id": item_id, **fields})
    except orjson.JSONEncodeError as exc:  # orjson reads deeper nesting than it writes.
        raise BadRequest(422, f"Body cannot be stored: {exc}") from exc
    await services.items.put(item_id, body)
    return _written(body)


@router.delete(
    "/items/{item_id}",
    tags=["items"],
    summary="Delete an item.",
    status_code=204,
    responses={404: {"description": "No such item in the store"}},
)
async def delete_item(item_id: ItemId, items: Items) -> Response:
    if not await items.delete(item_id):
        return _json(orjson.dumps({"detail": f"Item {item_id} not found"}), 404)
    return _written(b"", 204)


@router.get("/items", tags=["items"], summary="A page of stored items in id order.")
async def list_items(
    services: AppServices,
    after: Annotated[int, Query(ge=-1, le=MAX_ITEM_ID, description="Last id seen.")] = -1,
    limit: Annotated[int, Query(ge=1, description="Page size.")] = 100,
) -> Response:
    limit_max = services.settings.request.page_limit_max
    if limit > limit_max:
        raise BadRequest(422, f"limit must be at most {limit_max}")
    page = await services.items.page(after, limit)
    body: dict[str, Any] = {
        "items": [orjson.Fragment(item.body) for item in page.items],
        "next_after": page.next_after,
    }
    return _json(orjson.dumps(body))
