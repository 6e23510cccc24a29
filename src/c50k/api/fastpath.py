"""GET /items/{id} without FastAPI's routing, validation and dependency solving.

py-spy on a cached GET /items/{id} showed the framework path (routing, request objects,
dependency and parameter solving, response objects) spending most of the worker's CPU, and the
aggregate itself a few percent. This middleware answers the well-formed requests of the hottest
route directly; every other request (a malformed id, another method or route) goes on to FastAPI,
so validation errors, the OpenAPI document and every other rule stay FastAPI's. Both paths build
the answer with `aggregate_answer`, so they cannot drift. BENCHMARKS.md has the before/after.
"""

from __future__ import annotations

import logging

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from c50k.api.lifecycle import Lifecycle
from c50k.api.responses import WHOLE_RESPONSE
from c50k.items.service import Aggregate
from c50k.observability.instrumentation import ROUTE_KEY, answering
from c50k.settings import MAX_ITEM_ID
from c50k.store import consistency

logger = logging.getLogger(__name__)

PREFIX = "/items/"
INTERNAL_ERROR = b'{"detail":"Internal server error"}'
MAX_DIGITS = len(str(MAX_ITEM_ID))
COMPLETE_HEADER = "X-Items-Complete"
TOKEN_HEADER = consistency.HEADER.lower().encode()
ROUTE = "/items/{item_id}"  # The template FastAPI's route has; metrics label it so.
STALE_HEADER = "X-Items-Stale"


def aggregate_answer(aggregate: Aggregate) -> tuple[bytes, str]:
    """The body and the X-Items-Complete value of a GET /items/{id} answer."""
    return aggregate.to_json(), "true" if aggregate.complete else "false"


def parse_item_id(path: str) -> int | None:
    """The id of `/items/<id>` when it is written the one accepted way, else None."""
    if not path.startswith(PREFIX):
        return None
    raw = path[len(PREFIX) :]
    if not (0 < len(raw) <= MAX_DIGITS and raw.isascii() and raw.isdigit()):
        return None
    item_id = int(raw)
    return item_id if item_id <= MAX_ITEM_ID else None


class ItemsFastPath:
    def __init__(self, app: ASGIApp, state: State, lifecycle: Lifecycle) -> None:
        self.app = app
        self.state = state
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item_id = None
        if scope["type"] == "http" and scope["method"] == "GET":
            item_id = parse_item_id(scope["path"])
            # A read after the client's own write (consistency token) takes the full route.
            if item_id is not None and any(n == TOKEN_HEADER for n, _v in scope["headers"]):
                item_id = None
        if item_id is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = ROUTE
        try:
            aggregate = await self.state.services.items.aggregate(item_id)
        except Exception:
            # aggregate() turns every failure of a side into an error object; reaching this is
            # a bug. Answer like the rest of the app (JSON, no details) and log the traceback.
            logger.exception("GET /items/%d failed", item_id)
            await _send(scope, send, 500, INTERNAL_ERROR, [])
            return
        body, complete = aggregate_answer(aggregate)
        headers = [(b"x-items-complete", complete.encode())]
        if aggregate.stale is not None:
            headers.append((b"x-items-stale", aggregate.stale.encode()))
        await _send(scope, send, 200, body, headers, close=self.lifecycle.draining)


async def _send(
    scope: Scope,
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    close: bool = False,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    answering(scope, status, headers)
    extensions = scope.get("extensions")
    if extensions is not None and WHOLE_RESPONSE in extensions:
        # One message, one write: the head built here (c50k's protocol).
        head = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
        await send(
            {"type": WHOLE_RESPONSE, "status": status, "head": head, "body": body, "close": close}
        )
        return
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
