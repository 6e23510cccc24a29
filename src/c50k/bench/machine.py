"""The machine a benchmark runs on, and the limits of it that can cap a run.

The harness reads these settings and names them when they bind; it never changes one.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from c50k import __version__

# Files a generator process needs besides its connections (stdio, epoll, script, logs).
GENERATOR_SPARE_FILES = 64


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_bytes: int
    kernel: str
    python: str
    nofile_soft: int
    nofile_hard: int
    ephemeral_ports: tuple[int, int]
    somaxconn: int
    tcp_max_syn_backlog: int
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ports_per_destination(self) -> int:
        low, high = self.ephemeral_ports
        return high - low + 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limit:
    """A machine setting that caps (or would cap) the run, named as an operator finds it."""

    setting: str
    value: str
    problem: str

    def __str__(self) -> str:
        return f"{self.setting} = {self.value}: {self.problem}"


def _read_int(path: str, default: int = 0) -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def read_machine() -> Machine:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        kernel=platform.release(),
        python=platform.python_version(),
        nofile_soft=soft,
        nofile_hard=hard,
        ephemeral_ports=(low, high),
        somaxconn=_read_int("/proc/sys/net/core/somaxconn"),
        tcp_max_syn_backlog=_read_int("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        versions={
            "c50k": __version__,
            "wrk": _tool_version(["wrk", "--version"]),
            "h2load": _tool_version(["h2load", "--version"]),
            "nginx": _tool_version(["nginx", "-v"]),
        },
    )


def limits_for(
    machine: Machine,
    *,
    connections: int,
    generator_processes: int,
    addresses: int,
    workers: int,
    connections_per_worker: int,
    backlog: int,
    burst: bool = False,
) -> list[Limit]:
    """The machine and server limits that `connections` would run into. Pure: unit-tested."""
    limits: list[Limit] = []
    per_process = -(-connections // max(1, generator_processes)) + GENERATOR_SPARE_FILES
    if per_process > machine.nofile_soft:
        limits.append(
            Limit(
                "RLIMIT_NOFILE (ulimit -n)",
                str(machine.nofile_soft),
                f"each of {generator_processes} generator processes would hold {per_process} "
                f"files; use more generator processes",
            )
        )
    per_address = -(-connections // max(1, addresses))
    if per_address > machine.ports_per_destination:
        low, high = machine.ephemeral_ports
        limits.append(
            Limit(
                "net.ipv4.ip_local_port_range",
                f"{low} {high}",
                f"{machine.ports_per_destination} source ports per destination address, but "
                f"{per_address} connections would go to each of {addresses} addresses; "
                f"use more loopback addresses",
            )
        )
    if workers * connections_per_worker < connections:
        limits.append(
            Limit(
                "C50K_SERVER_WORKERS x C50K_SERVER_MAX_CONNECTIONS_PER_WORKER",
                f"{workers} x {connections_per_worker}",
                f"the service holds at most {workers * connections_per_worker} connections; "
                f"the rest are answered 503",
            )
        )
    if burst:
        effective = min(backlog, machine.somaxconn)
        if connections > effective * workers:
            limits.append(
                Limit(
                    "net.core.somaxconn",
                    str(machine.somaxconn),
                    f"{connections} connections opened at once queue in a listen backlog of "
                    f"{effective}; the rest wait for SYN retries (1 s, 3 s, ...)",
                )
            )
        if connections > machine.tcp_max_syn_backlog:
            limits.append(
                Limit(
                    "net.ipv4.tcp_max_syn_backlog",
                    str(machine.tcp_max_syn_backlog),
                    "half-open connections beyond it are dropped or answered with SYN cookies",
                )
            )
    return limits
