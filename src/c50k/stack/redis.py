"""Redis from the system's binary (Debian's redis-server), configured as a cache: no
persistence, a memory limit with LFU eviction, loopback only. One server for the local stack,
and the same code starts the tests' own servers on free ports in temporary directories."""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from c50k.stack.process import ManagedProcess, free_port
from c50k.stack.state import ServiceRecord, StackError

if TYPE_CHECKING:
    from c50k.stack.stack import Launch

READY_TIMEOUT = 15.0
MAXMEMORY = "256mb"
# A cache, not a database: nothing is written to disk, and when memory is full the least
# frequently used keys go (leases and values alike carry TTLs; LFU keeps the hot ones).
CONFIG = """\
bind {host}
port {port}
protected-mode yes
daemonize no
dir {dir}
logfile ""
save ""
appendonly no
maxmemory {maxmemory}
maxmemory-policy allkeys-lfu
"""


def binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StackError("redis-server was not found (install the Debian package redis-server)")
    return found


def answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server in `root`, on `host:port`; it can be stopped, paused and restarted
    there (the fault tests do), always by the PID it was started with."""

    def __init__(self, root: Path, host: str, port: int, name: str = "redis") -> None:
        self.root = root
        self.host = host
        self.port = port
        self.name = name
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self) -> ServiceRecord:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / f"{self.name}.conf"
        conf.write_text(
            CONFIG.format(host=self.host, port=self.port, dir=self.root, maxmemory=MAXMEMORY)
        )
        process = ManagedProcess(self.name, [binary(), str(conf)], self.log_path).start()
        self.process = process
        process.wait_until(
            lambda: answers_ping(self.host, self.port), READY_TIMEOUT, "answering PING"
        )
        return ServiceRecord.of(
            process,
            "redis",
            self.host,
            self.port,
            stop_signal=signal.SIGTERM,  # With `save ""`, it exits at once.
            stop_timeout=10.0,
            data_dir=self.root,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # A paused server cannot act on SIGTERM.
            self.process.stop()

    def kill(self) -> None:
        """As a crash would: SIGKILL, nothing saved (nothing is, anyway)."""
        if self.process is not None:
            self.process.stop(signum=signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a stalled Redis)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


@contextmanager
def running_redis(root: Path, host: str = "127.0.0.1") -> Iterator[RedisServer]:
    """A redis-server of its own on a free port in `root`, stopped by its PID on exit."""
    server = RedisServer(root, host, free_port(host))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def start_tier(launch: Launch) -> None:
    server = RedisServer(launch.state_dir / "redis", launch.plan.host, launch.ports.take())
    try:
        record = server.start()
    except BaseException:
        server.stop()  # Started but not recorded (it never answered): `down` cannot find it.
        raise
    if server.process is not None:
        server.process.detach()  # `down` stops it by PID, maybe from another command.
    launch.state.add(record)
    launch.group("redis")["url"] = server.url
