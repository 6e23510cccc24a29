"""`c50k profile`: a flame graph of one live worker, recorded by py-spy from outside.

py-spy reads the worker's memory (ptrace): no code in the worker, nothing to turn on, and
`--nonblocking` never pauses it, so it is safe on a server under load. It needs the same
user as the worker (or root) and, in a container, the SYS_PTRACE capability.
docs/observability.md has the whole workflow (top, dump, record during a bench run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# py-spy stops by itself after --duration; this much longer is a hung py-spy.
OVERRUN_SECONDS = 30


class ProfileError(RuntimeError):
    pass


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def worker_of(pid: int) -> int:
    """`pid` itself, or when it is a gunicorn master, its first worker: workers are forks of
    the master, so they share its command line (the metrics exporter does not)."""
    own = _cmdline(pid)
    if own is None:
        raise ProfileError(f"no process {pid}")
    workers = [child for child in _children(pid) if _cmdline(child) == own]
    return min(workers) if workers else pid


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (pip install 'c50k[bench]')")
    return found


def record_flame_graph(
    pid: int, seconds: int, output: Path, rate: int = 100, *, idle: bool = False
) -> int:
    """Sample the worker for `seconds` into an SVG flame graph; returns the worker's PID.
    Without `idle`, a worker waiting for work leaves no samples: profile it under load."""
    worker = worker_of(pid)
    argv = [py_spy(), "record", "--pid", str(worker), "--duration", str(seconds)]
    argv += ["--rate", str(rate), "--format", "flamegraph", "--output", str(output)]
    argv += ["--nonblocking", *(["--idle"] if idle else [])]
    try:
        done = subprocess.run(  # noqa: S603 -- py-spy with arguments we built.
            argv, capture_output=True, text=True, timeout=seconds + OVERRUN_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ProfileError(f"py-spy did not finish within {seconds + OVERRUN_SECONDS} s") from exc
    if "No stack counts found" in done.stderr:
        raise ProfileError(f"worker {worker} was idle: profile it under load, or pass --idle")
    if done.returncode != 0 or not output.exists():
        raise ProfileError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return worker
