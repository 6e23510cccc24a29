"""Per-request observability, begun and ended by admission control (the outermost layer), so
shed requests and fast-path answers are counted like every other.

Whoever answers records the status in the scope and adds the request id (X-Request-ID) to
its answer: admission control's 503 and the fast path do it themselves, and
`RecordAnswers` does it for FastAPI by wrapping `send`. Wrapping `send` for every request
cost two more coroutines per request, a third of this wrapper's cost on the hottest route.
BENCHMARKS.md has the throughput with observability on and off.
"""

from __future__ import annotations

from time import perf_counter

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from c50k.observability.metrics import UNMATCHED_ROUTE, Metrics
from c50k.observability.requestid import HEADER, RequestIds, request_id

# Scope keys. The fast path, which answers before FastAPI's router, names its route here.
ROUTE_KEY = "c50k.route"
STATUS_KEY = "c50k.status"  # The status of the answer, set by whoever sent it.
REQUEST_ID_KEY = "c50k.request_id"  # The id every answer carries in X-Request-ID (bytes).
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


def answering(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """For code that sends an answer itself: record its status and add the request id."""
    scope[STATUS_KEY] = status
    rid = scope.get(REQUEST_ID_KEY)
    if rid is not None:
        headers.append((HEADER, rid))


class RecordAnswers:
    """Around FastAPI's stack: what `answering` does, for every answer it sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: some senders pass a module-level constant.
                headers = list(message.get("headers", ()))
                answering(scope, message["status"], headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_recorded)


class RequestObserver:
    """The request id, the request's metrics and its access line. Admission control, the
    outermost layer, calls `begin` and `end` around every HTTP request: calls, not another
    ASGI layer, which cost a coroutine and a frame per request."""

    def __init__(
        self,
        *,
        metrics: Metrics | None,
        request_ids: RequestIds | None,
        access_log: bool,
    ) -> None:
        self.metrics = metrics
        self.request_ids = request_ids
        self.access_log = access_log
        # Bound once: the attribute lookups cost as much as some of the work per request.
        self._id_of = request_ids.of if request_ids is not None else None
        self._observe = metrics.requests.observe if metrics is not None else None
        # With request ids alone, the end of a request has nothing to record.
        self._records = metrics is not None or access_log

    def begin(self, scope: Scope) -> float:
        id_of = self._id_of
        if id_of is not None:
            rid = scope[REQUEST_ID_KEY] = id_of(scope["headers"])
            request_id.set(rid)
        return perf_counter()

    def end(self, scope: Scope, started: float) -> None:
        if not self._records:
            return
        elapsed = perf_counter() - started
        # 500 when nothing answered: the app failed before it started a response, and the
        # server answers 500.
        status: int = scope.get(STATUS_KEY, 500)
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        route = route_of(scope)
        if self._observe is not None:
            # The status stays an int here; the flush writes label values.
            self._observe((method, route, status), elapsed)
        if self.access_log:
            # The client as uvicorn's proxy-headers rule decided it: the load balancer's
            # X-Forwarded-For, believed only from C50K_SERVER_FORWARDED_ALLOW_IPS.
            client = scope.get("client")
            access_logger.info(
                "request",
                method=method,
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                client=f"{client[0]}:{client[1]}" if client else None,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
            )
