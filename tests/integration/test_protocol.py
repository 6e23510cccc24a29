"""c50k's protocol on a real server and real sockets: the door's refusals and the connection cap.

runtime/protocol.py depends on uvicorn's internals; these tests are the alarm that an upgrade of
uvicorn broke it (they speak raw HTTP/1.1, so they see exactly what a client would).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from c50k.api.responses import WHOLE_RESPONSE
from c50k.api.shedding import Admission, QueuePolicy
from c50k.runtime.protocol import C50kHttpToolsProtocol, LazyFlowControl
from c50k.runtime.worker import DrainingServer

WAIT_SECONDS = 10.0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = orjson.dumps({"path": scope["path"], "body_bytes": len(body)})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def serving(admission: Admission, cap: int | None = None) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = Config(app, http=C50kHttpToolsProtocol, lifespan="off", log_level="warning")
    server = DrainingServer(config, None, 0.0, admission=admission, connection_cap=cap)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not server.started:  # noqa: ASYNC110 -- uvicorn sets a flag, not an event.
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_SECONDS)
        sock.close()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        return await self.response(head_only=method == "HEAD")

    async def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(WAIT_SECONDS):
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            length = 0 if head_only else int(headers.get("content-length", "0"))
            return status, headers, await self.reader.readexactly(length)

    async def closed_by_server(self) -> bool:
        async with asyncio.timeout(WAIT_SECONDS):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


SHED = {"detail": "Service overloaded, retry later"}


async def test_a_refusal_at_the_door_is_json_and_the_connection_stays_usable() -> None:
    admission = Admission(QueuePolicy())
    async with serving(admission) as port:
        connection = await Connection.open(port)
        admission.memory_high = True  # The door refuses (the same path as a standing queue).
        status, headers, body = await connection.request("GET", "/items/1")
        assert (status, orjson.loads(body)) == (503, SHED)
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "1"
        assert "connection" not in headers  # Keep-alive: the client may come back.
        # A body the app never read is skipped, and the next request is served.
        status, _headers, body = await connection.request("PUT", "/items/2", b'{"a": 1}' * 100)
        assert status == 503
        status, _headers, body = await connection.request("HEAD", "/items/3")
        assert (status, body) == (503, b"")
        # Health checks pass the door whatever it refuses.
        status, _headers, body = await connection.request("GET", "/health")
        assert (status, orjson.loads(body)["path"]) == (200, "/health")
        admission.memory_high = False
        status, _headers, body = await connection.request("PUT", "/items/4", b'{"a": 1}')
        assert (status, orjson.loads(body)) == (200, {"path": "/items/4", "body_bytes": 8})
        connection.close()
    assert admission.shed["memory"] == 3


async def test_every_request_gets_its_arrival_stamp() -> None:
    admission = Admission(QueuePolicy())
    seen: list[float] = []
    admission.observe_wait = seen.append
    async with serving(admission) as port:
        connection = await Connection.open(port)
        for _ in range(3):
            assert (await connection.request("GET", "/items/1"))[0] == 200
        connection.close()
    # The app here does not call at_start: the door let all three in and counted them queued.
    assert admission.queued == 3
    assert seen == []


async def test_a_connection_beyond_the_cap_gets_a_json_503_and_is_closed() -> None:
    admission = Admission(QueuePolicy())
    async with serving(admission, cap=2) as port:
        held = [await Connection.open(port) for _ in range(2)]
        for connection in held:
            assert (await connection.request("GET", "/items/1"))[0] == 200
        extra = await Connection.open(port)
        status, headers, body = await extra.request("GET", "/items/1")
        assert (status, orjson.loads(body)) == (503, SHED)
        assert headers["connection"] == "close"
        assert headers["retry-after"] == "1"
        assert await extra.closed_by_server()
        extra.close()
        # The connections already held are still served.
        for connection in held:
            assert (await connection.request("GET", "/items/2"))[0] == 200
            connection.close()
    assert admission.shed["connections"] == 1


class RecordingTransport(asyncio.Transport):
    """A transport that records each write: one write per answer is what the protocol
    promises (fewer `send` system calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def whole_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert WHOLE_RESPONSE in scope["extensions"]
    body = b'{"whole":true}'
    head = b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    await send({"type": WHOLE_RESPONSE, "status": 200, "head": head, "body": body})


async def answers_on(
    application: Any, data: bytes, *, answers: int = 1
) -> tuple[C50kHttpToolsProtocol, RecordingTransport]:
    config = Config(application, http=C50kHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    protocol = C50kHttpToolsProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(data)
    async with asyncio.timeout(WAIT_SECONDS):
        while len(transport.writes) < answers:  # noqa: ASYNC110 -- the transport is a fake.
            await asyncio.sleep(0.001)
    return protocol, transport


GET = b"GET /items/1 HTTP/1.1\r\nHost: test\r\n\r\n"


async def test_an_answer_in_two_messages_goes_out_in_one_write() -> None:
    protocol, transport = await answers_on(app, GET)
    await asyncio.sleep(0.01)  # Nothing more comes.
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert orjson.loads(body) == {"path": "/items/1", "body_bytes": 0}
    # The finished request is dropped at once, not kept until the next one.
    finished: tuple[object, ...] = (protocol.cycle, protocol.scope, protocol.headers)
    assert finished == (None, None, None)
    assert not transport.closed


async def test_a_whole_answer_is_one_write_and_closes_when_the_client_asked() -> None:
    _protocol, transport = await answers_on(whole_app, GET)
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n"
        b'{"whole":true}'
    ]
    assert not transport.closed
    closing = b"GET /items/1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    _protocol, transport = await answers_on(whole_app, closing)
    assert transport.writes[0].startswith(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n"
        b"connection: close\r\n\r\n"
    )
    assert transport.closed


async def test_pipelined_requests_are_answered_in_order_one_write_each() -> None:
    _protocol, transport = await answers_on(
        app, GET + b"GET /items/2 HTTP/1.1\r\nHost: test\r\n\r\n", answers=2
    )
    assert len(transport.writes) == 2
    assert [orjson.loads(w.split(b"\r\n\r\n")[1])["path"] for w in transport.writes] == [
        "/items/1",
        "/items/2",
    ]


async def test_lazy_flow_control_makes_writers_wait_only_while_paused() -> None:
    flow = LazyFlowControl(RecordingTransport())
    await asyncio.wait_for(flow.drain(), WAIT_SECONDS)  # Never paused: no wait, no event.
    flow.pause_writing()
    waiting = asyncio.ensure_future(flow.drain())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    flow.resume_writing()
    await asyncio.wait_for(waiting, WAIT_SECONDS)
