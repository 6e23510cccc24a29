"""A child process the project started and therefore may stop, by its own PID only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType


class ProcessError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out and released; free unless someone races for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- loopback URLs we built.
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} is not started")
        return self._popen.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(  # noqa: S603 -- argv is built by the project.
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not our children.
            )
        return self

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ProcessError(f"{self.name} exited before it was {what}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise ProcessError(f"{self.name} was not {what} within {timeout} s:\n{self.log_tail()}")

    def send_signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} is not started")
        return self._popen.wait(timeout)

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """Stop the process: `signum`, then SIGKILL after `timeout`. Returns its exit code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            os.kill(self._popen.pid, signum)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                # Its own session: the group holds only this process and its children
                # (gunicorn's workers), so none of them outlives it.
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        return self._popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
