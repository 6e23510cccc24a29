"""A child process the project started and therefore may stop, by its own PID only."""

from __future__ import annotations

import os
import pwd
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


def process_start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat), or None
    when no such process exists. A PID with a different start time is a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Whether the process we started as `pid` at `started` still runs (not a zombie)."""
    if process_start_ticks(pid) != started:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def stop_pid(pid: int, started: int, signum: int, timeout: float) -> bool:
    """Stop a process this project started in an earlier command (a stack daemon): `signum`,
    then SIGKILL after `timeout`. Only when PID and start time both match. True if it ran."""
    if not alive(pid, started):
        return False
    os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, started):
            return True
        time.sleep(0.05)
    if alive(pid, started):
        os.kill(pid, signal.SIGKILL)
        while alive(pid, started) and time.monotonic() < deadline + timeout:
            time.sleep(0.05)
    return True


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
        *,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.user = user
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
                user=self.user,
                group=None if self.user is None else pwd.getpwnam(self.user).pw_gid,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not our children.
            )
        return self

    @property
    def started(self) -> int:
        """The start time that, with the PID, names this process in a later command."""
        started = process_start_ticks(self.pid)
        if started is None:
            raise ProcessError(f"{self.name} exited at once:\n{self.log_tail()}")
        return started

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

    def detach(self) -> None:
        """Let the process outlive this object: a stack daemon that a later command stops by
        its recorded PID (stop_pid). Popen would warn when collected with its child running."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.returncode = 0

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
