"""A TCP proxy in front of a real PostgreSQL that counts round trips and breaks connections.

It reads the client's side of the protocol as the server does: after the untyped start-up
messages (an SSLRequest or GSSENCRequest, then the StartupMessage), every message is a type
byte and a length. A client waits for the server after each Sync (extended protocol), Flush
(asyncpg describes a statement with one) and Query (simple protocol): those are its round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

# Request codes of the start-up packets the server answers with one byte, after which the
# real StartupMessage follows.
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
WAITS_FOR_SERVER = frozenset(b"SHQ")  # Sync, Flush, Query.


class ClientMessages:
    """The client-to-server byte stream cut into messages; counts the round trips."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._started = False

    @property
    def started(self) -> bool:
        """Past the start-up: the connection is open and in use."""
        return self._started

    def feed(self, data: bytes) -> int:
        """The round trips that `data` completes."""
        self._buffer += data
        trips = 0
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return trips
                length = int.from_bytes(self._buffer[:4], "big")
                code = int.from_bytes(self._buffer[4:8], "big")
                if len(self._buffer) < length:
                    return trips
                del self._buffer[:length]
                self._started = code not in (SSL_REQUEST, GSSENC_REQUEST)
                continue
            if len(self._buffer) < 5:
                return trips
            kind, length = self._buffer[0], int.from_bytes(self._buffer[1:5], "big")
            if len(self._buffer) < 1 + length:
                return trips
            del self._buffer[: 1 + length]
            trips += kind in WAITS_FOR_SERVER


class CountingProxy:
    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._dsn = parts
        self.round_trips = 0
        self.connections = 0
        # The next message any client sends closes its connection instead of reaching the
        # server: to the client, a connection a server restart or the network broke.
        self.break_next_message = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def dsn(self) -> str:
        """The server's DSN with the proxy's address in it."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        netloc = f"{self._dsn.username}@127.0.0.1:{port}" if self._dsn.username else ""
        return urlunsplit(self._dsn._replace(netloc=netloc or f"127.0.0.1:{port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        self._writers |= {client_w, server_w}
        pumps = [
            asyncio.create_task(self._to_server(client_r, server_w)),
            asyncio.create_task(self._pump(server_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_w, server_w):
                writer.transport.abort()
                self._writers.discard(writer)
            self._tasks.difference_update(pumps)

    async def _to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        messages = ClientMessages()
        while data := await reader.read(65536):
            if self.break_next_message and messages.started:
                self.break_next_message = False
                return  # Both sides are cut; nothing of this message reaches the server.
            self.round_trips += messages.feed(data)
            writer.write(data)
            await writer.drain()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def counting_proxy(dsn: str) -> AsyncIterator[CountingProxy]:
    proxy = CountingProxy(dsn)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
