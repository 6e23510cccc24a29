"""Admission control: a worker with too many requests in flight answers the next ones with a
fast 503 and Retry-After, instead of queueing them until every answer is late.

Counting requests in flight (not connections): a cached GET /items/{id} completes within one
step of the event loop, so even 50,000 busy keep-alive connections keep this count low; it
grows when requests wait — on a slow upstream, or behind a saturated CPU. The limit is per
worker; `c50k bench overload` measures it and the tuning advisor recommends a value.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from c50k.observability.instrumentation import RequestObserver, answering

SHED_BODY = b'{"detail":"Service overloaded, retry later"}'
SHED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(SHED_BODY)).encode()),
    (b"retry-after", b"1"),
]
# A load balancer's checks must see the process alive and ready even while it sheds.
EXEMPT_PATHS = frozenset({"/health", "/ready"})


class AdmissionControl:
    def __init__(
        self, app: ASGIApp, max_in_flight: int, observer: RequestObserver | None = None
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        # Outermost, so it also sees every request begin and end (request id, metrics).
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One frame for admission and observation: another ASGI layer around this one cost a
        # coroutine per request on the hottest route.
        observer = self.observer
        started = observer.begin(scope) if observer is not None else 0.0
        try:
            if scope["path"] in EXEMPT_PATHS:
                await self.app(scope, receive, send)
            elif self.max_in_flight and self.in_flight >= self.max_in_flight:
                await self._shed(scope, send)
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, receive, send)
                finally:
                    self.in_flight -= 1
        finally:
            if observer is not None:
                observer.end(scope, started)

    async def _shed(self, scope: Scope, send: Send) -> None:
        self.shed += 1
        headers = list(SHED_HEADERS)
        answering(scope, 503, headers)
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": SHED_BODY})
