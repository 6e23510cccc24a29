"""Server-side figures during a run: CPU, RSS and open files of every server process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class ProcessSample:
    pid: int
    name: str
    cpu_seconds: float
    rss_bytes: int
    open_files: int


@dataclass
class Sample:
    elapsed: float
    processes: list[ProcessSample]

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes)

    @property
    def open_files(self) -> int:
        return sum(p.open_files for p in self.processes)


@dataclass
class ServerFigures:
    """What the sampler saw: before the load (idle) and during it."""

    idle: Sample | None = None
    samples: list[Sample] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        if self.idle is None or not self.samples:
            return 0.0
        first = {p.pid: p.cpu_seconds for p in self.idle.processes}
        last = self.samples[-1].processes
        return sum(p.cpu_seconds - first.get(p.pid, 0.0) for p in last)

    def peak(self) -> Sample | None:
        return max(self.samples, key=lambda s: s.rss_bytes, default=None)

    def rss_per_connection(self, connections: int) -> float | None:
        """Bytes of RSS each held connection added (peak minus idle), or None if unknown."""
        peak = self.peak()
        if self.idle is None or peak is None or connections <= 0:
            return None
        return max(0, peak.rss_bytes - self.idle.rss_bytes) / connections

    def summary(self, connections: int, requests: int) -> dict[str, Any]:
        peak = self.peak()
        per_connection = self.rss_per_connection(connections)
        cpu = self.cpu_seconds()
        return {
            "cpu_seconds": round(cpu, 2),
            "cpu_us_per_request": round(cpu / requests * 1e6, 1) if requests else None,
            "idle_rss_mb": round(self.idle.rss_bytes / 2**20, 1) if self.idle else None,
            "peak_rss_mb": round(peak.rss_bytes / 2**20, 1) if peak else None,
            "rss_kb_per_connection": (
                round(per_connection / 1024, 2) if per_connection is not None else None
            ),
            "peak_open_files": max((s.open_files for s in self.samples), default=None),
            "processes_at_peak": [
                {
                    "pid": p.pid,
                    "name": p.name,
                    "rss_mb": round(p.rss_bytes / 2**20, 1),
                    "open_files": p.open_files,
                }
                for p in (peak.processes if peak else [])
            ],
        }


def sample(pids: list[int], started: float) -> Sample:
    processes: list[ProcessSample] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                cpu = proc.cpu_times()
                processes.append(
                    ProcessSample(
                        pid=pid,
                        name=proc.name(),
                        cpu_seconds=cpu.user + cpu.system,
                        rss_bytes=proc.memory_info().rss,
                        open_files=proc.num_fds(),
                    )
                )
        except psutil.Error:
            continue  # Exited between listing and sampling (a restarted worker).
    return Sample(time.monotonic() - started, processes)


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (gunicorn's master and workers, nginx's workers)."""
    try:
        proc = psutil.Process(root)
        return [root, *(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return []


async def sample_every(
    interval: float,
    pids: Callable[[], list[int]],
    figures: ServerFigures,
    stop: asyncio.Event,
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        figures.samples.append(sample(pids(), started))
        with contextlib.suppress(TimeoutError):  # The interval passed; sample again.
            await asyncio.wait_for(stop.wait(), interval)
