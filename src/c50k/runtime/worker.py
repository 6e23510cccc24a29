"""The gunicorn worker c50k runs: uvicorn on uvloop + httptools, with c50k's protocol
(runtime/protocol.py: admission at the door, a connection cap) and a graceful drain.

uvicorn_worker.UvicornWorker passes gunicorn's keepalive, timeout, max_requests and backlog to
uvicorn, but not `worker_connections`: this subclass is where that setting becomes the
protocol's connection cap, so a worker over its budget answers 503 at once instead of failing
accept() with EMFILE. uvicorn's own `limit_concurrency` stays off: it counts finished request
tasks until their done callbacks run (runtime/protocol.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.config import Config
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from c50k.api.lifecycle import Lifecycle
from c50k.api.shedding import Admission
from c50k.runtime.acceptor import BatchAcceptor
from c50k.runtime.protocol import C50kHttpToolsProtocol
from c50k.settings import Settings

STARTUP_FAILURE = 3  # uvicorn's exit status when the lifespan's startup fails.


# CPython's collector, tuned for a worker that holds thousands of connections (applied once the
# app has started). With the defaults (700, 10, 10), requests in flight for a second or two
# survive many young collections and reach the oldest generation, which was then collected
# every 1.5-2 s, each pass scanning every connection's objects for 300-900 ms and finding
# nothing (0 objects collected): a third of a worker's time at 12,500 connections. Freezing
# what startup made and collecting the young generation every 50,000 allocations doubled the
# throughput of that closed loop and halved its latency (BENCHMARKS.md).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.freeze()  # What startup made lives as long as the worker: never scan it again.
    gc.set_threshold(*GC_THRESHOLDS)


class DrainingServer(Server):
    """On the first SIGTERM, mark the app draining (/ready → 503) and keep serving for
    `drain_seconds`; only then stop accepting and let in-flight requests finish."""

    def __init__(
        self,
        config: Config,
        lifecycle: Lifecycle | None,
        drain_seconds: float,
        *,
        admission: Admission | None = None,
        connection_cap: int | None = None,
    ) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._drain_seconds = drain_seconds
        self._admission = admission
        self._connection_cap = connection_cap
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup for gunicorn's sockets, with batch accepting (runtime/acceptor.py)."""
        if sockets is None:
            await super().startup(sockets)
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        tune_gc()
        config, state = self.config, self.server_state
        admission, cap = self._admission, self._connection_cap

        def create_protocol() -> asyncio.Protocol:
            return C50kHttpToolsProtocol(
                config=config,
                server_state=state,
                app_state=self.lifespan.state,
                admission=admission,
                connection_cap=cap,
            )

        loop = asyncio.get_running_loop()
        acceptors = [BatchAcceptor(loop, sock, create_protocol, ssl=config.ssl) for sock in sockets]
        for acceptor in acceptors:
            acceptor.start()
        self.servers = acceptors  # type: ignore[assignment]  # close() and wait_closed() suffice.
        self.started = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        lifecycle, loop = self._lifecycle, self._loop
        if (
            sig == signal.SIGTERM  # SIGTERM: sent by gunicorn's master on a graceful stop.
            and lifecycle is not None
            and not lifecycle.draining  # A second SIGTERM ends the drain early.
            and loop is not None
            and not self.should_exit
        ):
            lifecycle.begin_drain()  # /ready answers 503 from now on, whatever the drain time.
            if self._drain_seconds > 0:
                # Signal handlers run between bytecodes; schedule through the thread-safe call.
                loop.call_soon_threadsafe(
                    loop.call_later, self._drain_seconds, super().handle_exit, sig, frame
                )
                return
        super().handle_exit(sig, frame)

    def quit_now(self) -> None:
        """Stop accepting, cancel in-flight requests, run the lifespan's shutdown, exit."""
        self.config.timeout_graceful_shutdown = 0
        self.should_exit = True


def _settings_of(application: Any) -> Settings:
    # `c50k serve` hands its Settings over; plain `gunicorn -c python:c50k.runtime.gunicorn_conf`
    # reads them from the environment like everything else.
    settings = getattr(application, "settings", None)
    return settings if isinstance(settings, Settings) else Settings()


class C50kWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn_worker ships no type hints.
    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": C50kHttpToolsProtocol}  # noqa: RUF012

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # c50k's own log lines go where gunicorn sends its error log, like uvicorn's do.
        logger = logging.getLogger("c50k")
        logger.handlers = self.log.error_log.handlers
        logger.setLevel(self.log.error_log.level)
        logger.propagate = False
        settings = _settings_of(self.app)
        self.config.limit_concurrency = None  # The protocol's connection cap stands for it.
        self._connection_cap = self.cfg.worker_connections
        self.config.timeout_graceful_shutdown = settings.server.graceful_timeout_seconds
        self._drain_seconds = settings.server.drain_seconds

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        state = getattr(self.wsgi, "state", None)
        lifecycle = getattr(state, "lifecycle", None)
        admission = getattr(state, "admission", None)
        server = DrainingServer(
            self.config,
            lifecycle if isinstance(lifecycle, Lifecycle) else None,
            self._drain_seconds,
            admission=admission if isinstance(admission, Admission) else None,
            connection_cap=self._connection_cap,
        )
        # gunicorn's master turns SIGINT (Ctrl-C) into SIGQUIT for its workers: stop now.
        # UvicornWorker's own handler only clears gunicorn's `alive` flag, which uvicorn never
        # reads, so the master waited out graceful_timeout and then killed the worker.
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, server.quit_now)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
