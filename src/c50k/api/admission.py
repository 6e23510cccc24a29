"""Admission control at the start of work: the outermost ASGI layer asks the worker's
`Admission` (api/shedding.py) whether a request that has waited this long may still run,
and answers a fast JSON 503 with Retry-After when not. Requests refused earlier, at the door,
never reach this layer (runtime/protocol.py answers them)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from c50k.api.shedding import SHED_BODY, SHED_HEADERS, Admission
from c50k.observability.instrumentation import RequestObserver, answering


class AdmissionControl:
    def __init__(
        self, app: ASGIApp, admission: Admission, observer: RequestObserver | None = None
    ) -> None:
        self.app = app
        self.admission = admission
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
        admission = self.admission
        try:
            if admission.at_start(scope) is not None:
                await _shed(scope, send)
            else:
                admission.in_flight += 1
                try:
                    await self.app(scope, receive, send)
                finally:
                    admission.in_flight -= 1
        finally:
            if observer is not None:
                observer.end(scope, started)


async def _shed(scope: Scope, send: Send) -> None:
    headers = list(SHED_HEADERS)
    answering(scope, 503, headers)
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": SHED_BODY})
