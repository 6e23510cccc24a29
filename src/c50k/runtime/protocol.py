"""c50k's HTTP/1.1 protocol: uvicorn's httptools protocol with c50k's door in front of the app.

Every line that depends on uvicorn's internals (HttpToolsProtocol's attributes, its
`_start_asgi_task` hook, RequestResponseCycle's flags) lives in this module, and
tests/integration/test_protocol.py fails loudly when an upgrade of uvicorn changes them.

What it adds:
- each request is stamped when its head is read, for admission by waiting time
  (api/shedding.py);
- a request refused at the door is answered here, synchronously, with a prebuilt JSON 503: no
  task, no app, one write. At overload every microsecond a refusal costs comes out of the
  requests that are served;
- the connection cap counts connections, not tasks. uvicorn's own `limit_concurrency` check
  counts request tasks too, and a finished task leaves that set only when its done callback
  runs, one loop iteration later: at 11,000 busy connections a worker counted 20,500 "tasks"
  and answered plain-text 503s far below its cap. The cap here answers a connection beyond it
  with a JSON 503 and closes it, and never touches the connections already held.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.types import Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from c50k.api.shedding import CONNECTIONS, SHED_BODY, SHED_HEADERS, Admission

# A connection beyond the cap that sends no request is closed after this long.
OVER_CAP_CLOSE_SECONDS = 5.0


def _response(status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> bytes:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[status] + head + b"\r\n" + body


_CLOSE = ((b"connection", b"close"),)
# By (close the connection, the request was HEAD): a HEAD answer has no body.
SHED_RESPONSES = {
    (False, False): _response(503, SHED_HEADERS, SHED_BODY),
    (True, False): _response(503, SHED_HEADERS + _CLOSE, SHED_BODY),
    (False, True): _response(503, SHED_HEADERS, b""),
    (True, True): _response(503, SHED_HEADERS + _CLOSE, b""),
}


class C50kHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        admission: Admission | None = None,
        connection_cap: int | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._admission = admission
        self._connection_cap = connection_cap
        self._over_cap = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self._connection_cap
        if cap is not None and len(self.connections) > cap:
            self._over_cap = True
            # Its first request is answered 503; one that never comes must not hold the file.
            self.timeout_keep_alive_task = self.loop.call_later(
                OVER_CAP_CLOSE_SECONDS, self.timeout_keep_alive_handler
            )

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._over_cap:
            if self._admission is not None:
                self._admission.shed[CONNECTIONS] += 1
            self._refuse(cycle, close=True)
            return
        admission = self._admission
        if admission is not None and admission.at_door(cast(Scope, cycle.scope)) is not None:
            self._refuse(cycle, close=not cycle.keep_alive)
            return
        super()._start_asgi_task(cycle, app)

    def _refuse(self, cycle: RequestResponseCycle, *, close: bool) -> None:
        """Answer the request 503 now, as if the app had: the parser skips the rest of its
        body (the cycle is complete) and the next request on the connection is served."""
        cycle.response_started = True
        cycle.response_complete = True
        cycle.keep_alive = not close
        self.transport.write(SHED_RESPONSES[close, cycle.scope["method"] == "HEAD"])
        if close:
            self.transport.close()
        else:
            self.on_response_complete()
