"""Per-request observability as one pure ASGI wrapper, outermost: around admission control and
the fast path, so shed requests and fast-path answers are counted like every other.

Per request it costs a closure, two clock reads and a dict update (plus the request id and
the access log line when they are on); BENCHMARKS.md has the throughput with it on and off.
"""

from __future__ import annotations

from time import perf_counter

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from c50k.observability.metrics import UNMATCHED_ROUTE, Metrics
from c50k.observability.requestid import HEADER, RequestIds, request_id

# The fast path, which answers before FastAPI's router, names its route here.
ROUTE_KEY = "c50k.route"
# A client can send any method name; only these become label values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

access_logger = structlog.get_logger("c50k.access")


def route_of(scope: Scope) -> str:
    """The route template that answered (e.g. /items/{item_id}), never the raw path."""
    named = scope.get(ROUTE_KEY)
    if named is not None:
        return str(named)
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class Instrumentation:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        request_ids: RequestIds | None,
        access_log: bool,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.request_ids = request_ids
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid: bytes | None = None
        if self.request_ids is not None:
            rid = self.request_ids.of(scope["headers"])
            request_id.set(rid.decode("ascii"))
        started = perf_counter()
        # Unchanged if the app fails before it starts a response: the server then answers 500.
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if rid is not None:
                    # A new list: some senders pass a module-level constant.
                    message["headers"] = [*message.get("headers", ()), (HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            elapsed = perf_counter() - started
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            route = route_of(scope)
            if self.metrics is not None:
                self.metrics.requests.observe((method, route, str(status)), elapsed)
            if self.access_log:
                access_logger.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                )
