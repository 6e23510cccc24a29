"""BatchAcceptor: a whole backlog of connections is taken in one readiness event."""

from __future__ import annotations

import asyncio
import socket

from c50k.runtime.acceptor import BATCH, BatchAcceptor
from tests.waiting import eventually


class Echo(asyncio.Protocol):
    opened = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Echo.opened += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]  # A TCP transport.


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


async def test_a_backlog_larger_than_a_batch_is_accepted_and_served() -> None:
    Echo.opened = 0
    loop = asyncio.get_running_loop()
    sock = listening_socket()
    port = sock.getsockname()[1]
    # Connections wait in the backlog before the acceptor starts: one event must take many.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(BATCH + 100)]
    acceptor = BatchAcceptor(loop, sock, Echo)
    acceptor._accept()  # One readiness event, by hand: it must take a whole batch.
    assert len(acceptor._tasks) == BATCH
    acceptor.start()
    try:
        await eventually(lambda: Echo.opened == len(clients), "every connection open", 2.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
    finally:
        acceptor.close()
        await acceptor.wait_closed()
        for client in clients:
            client.close()
        sock.close()


async def test_closed_acceptor_takes_no_more_connections() -> None:
    Echo.opened = 0
    loop = asyncio.get_running_loop()
    sock = listening_socket()
    acceptor = BatchAcceptor(loop, sock, Echo)
    acceptor.start()
    acceptor.close()
    client = socket.create_connection(sock.getsockname())  # In the accept queue on return.
    for _ in range(3):  # Turns of the loop: a reader still installed would accept it now.
        await asyncio.sleep(0)
    assert Echo.opened == 0
    sock.setblocking(False)
    conn, _address = sock.accept()  # Left in the backlog, for gunicorn to close with the socket.
    conn.close()
    client.close()
    sock.close()
