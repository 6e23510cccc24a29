"""Accepting connections in batches.

libuv (inside uvloop 0.22+) accepts one connection per readiness event of a listening socket,
so a worker whose event loop is busy accepts one connection per loop iteration: under
load that was ~65 connections a second, while the rest waited in the listen backlog until it
overflowed and clients' retransmissions backed off for up to a minute (BENCHMARKS.md, "Holding
50,000 connections"). This acceptor takes up to BATCH pending connections each time the
socket is readable and hands each to the event loop as an already accepted socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from ssl import SSLContext

logger = logging.getLogger(__name__)

# Connections taken per readiness event: enough to empty a 4096-deep backlog in a few
# iterations, few enough that one iteration never spends long accepting.
BATCH = 512
# When the process is out of file descriptors, wait this long before accepting again (the
# per-worker connection budget should make this rare: it answers 503 well before EMFILE).
EMFILE_PAUSE_SECONDS = 0.1


class BatchAcceptor:
    """Stands in for the asyncio.Server of one listening socket (close, wait_closed)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl: SSLContext | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._ssl = ssl  # gunicorn's --certfile: TLS terminated in the worker.
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving = False

    def start(self) -> None:
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)
        self._serving = True

    def close(self) -> None:
        """Stop accepting; the socket itself belongs to gunicorn, which closes it."""
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self) -> None:
        for _ in range(BATCH):
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # Backlog empty.
            except ConnectionAbortedError:
                continue  # The client gave up while it waited in the backlog.
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("accept paused: %s", exc)
                    self.close()
                    self._loop.call_later(EMFILE_PAUSE_SECONDS, self._resume)
                    return
                raise
            conn.setblocking(False)
            task = self._loop.create_task(self._open(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self) -> None:
        if not self._serving and self._sock.fileno() != -1:
            self.start()

    async def _open(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except OSError:
            conn.close()  # Reset before we could wrap it: nothing to serve.
