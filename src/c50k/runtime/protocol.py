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
  with a JSON 503 and closes it, and never touches the connections already held;
- one write per answer. uvicorn writes a response's head when the app starts it and its body
  when the app sends it: two `send` system calls per answer, 43% of a hot worker's time in
  py-spy. `WholeAnswers` holds the head and writes it with the first body part, and takes a
  whole prebuilt answer in one message (WHOLE_RESPONSE, an ASGI extension the fast path uses);
- less memory per held connection: a finished request's cycle, scope and headers are dropped
  once its answer is written, instead of living until the next request on the connection; the
  flow control's event and the pipeline's deque are made only when needed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from starlette.types import Scope
from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from c50k.api.responses import WHOLE_RESPONSE
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


# In every scope this protocol makes (api/responses.py describes the extension).
EXTENSIONS: Mapping[str, object] = MappingProxyType({WHOLE_RESPONSE: {}})


class _Held:
    """Stands in for the transport while uvicorn's `send` builds a message: what it writes is
    kept, and a close is remembered, until the answer can go out in one write."""

    __slots__ = ("closed", "data")

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def close(self) -> None:
        self.closed = True


class WholeAnswers(RequestResponseCycle):
    """uvicorn's request-response cycle, writing each answer in one `write`. The protocol
    makes every cycle one of these (no new state: the class of an object uvicorn created)."""

    _held: _Held | None = None

    async def send(self, message: ASGISendEvent) -> None:
        kind = message["type"]
        if kind == WHOLE_RESPONSE and not self.response_started:
            await self._send_whole(cast(Mapping[str, Any], message))
            return
        if kind == "http.response.start" and not self.response_started:
            held = self._held = _Held()
            await self._through(held, message)
            return
        pending = self._held
        if pending is None:
            await super().send(message)
            return
        self._held = None
        await self._through(pending, message)
        # The head and the first body part in one write.
        if not self.disconnected:
            self.transport.write(b"".join(pending.data))
            if pending.closed:
                self.transport.close()

    async def _through(self, held: _Held, message: ASGISendEvent) -> None:
        transport = self.transport
        self.transport = held  # type: ignore[assignment]  # write() and close() are all send uses.
        try:
            await super().send(message)
        finally:
            self.transport = transport

    async def _send_whole(self, message: Mapping[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        if message.get("close"):
            self.keep_alive = False
        close = b"" if self.keep_alive else b"connection: close\r\n"
        status_line = STATUS_LINE[message["status"]]
        self.transport.write(
            b"".join((status_line, message["head"], close, b"\r\n", message["body"]))
        )
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class LazyFlowControl(FlowControl):
    """uvicorn's flow control, with its event made only when writing pauses: an asyncio.Event
    and its deque cost ~860 B on every held connection, and writing rarely pauses."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._is_writable_event = None  # type: ignore[assignment]  # Made on the first pause.

    async def drain(self) -> None:
        event: asyncio.Event | None = self._is_writable_event
        if event is not None:
            await event.wait()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            if self._is_writable_event is None:
                self._is_writable_event = asyncio.Event()
            self._is_writable_event.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            self._is_writable_event.set()


class LazyPipeline:
    """uvicorn's queue of pipelined requests, made only when a client pipelines: an empty deque
    costs ~760 B on every held connection."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[Any] | None = None

    def appendleft(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.appendleft(item)

    def pop(self) -> Any:
        if not self._items:
            raise IndexError("pop from an empty pipeline")
        return self._items.pop()

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0


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
        self.pipeline = LazyPipeline()  # type: ignore[assignment]  # appendleft, pop, bool.
        self._admission = admission
        self._connection_cap = connection_cap
        self._over_cap = False
        self._in_message = False  # From a request's first byte to its last (body included).

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = LazyFlowControl(transport)
        cap = self._connection_cap
        if cap is not None and len(self.connections) > cap:
            self._over_cap = True
            # Its first request is answered 503; one that never comes must not hold the file.
            self.timeout_keep_alive_task = self.loop.call_later(
                OVER_CAP_CLOSE_SECONDS, self.timeout_keep_alive_handler
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self.scope["extensions"] = cast(Any, EXTENSIONS)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_message = False
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:
            self._forget_finished()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._forget_finished()

    def _forget_finished(self) -> None:
        """Drop the finished request now, not at the next one on the connection: an idle
        keep-alive connection held ~3 KB of it. Only once the parser is done with it (the
        answer may go out before its body has arrived) and nothing newer is under way."""
        cycle = self.cycle
        if self._in_message or self.pipeline or cycle is None or not cycle.response_complete:
            return
        self.cycle = None  # type: ignore[assignment]
        self.scope = None  # type: ignore[assignment]
        self.headers = None  # type: ignore[assignment]
        self.url = b""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = WholeAnswers
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
