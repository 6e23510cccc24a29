"""A bounded, constant load for the edge tests: GET requests at a fixed rate from a thread,
stopped by the test or by its own limits (time and count), every failure kept."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import httpx

# Loopback only, a few hundred requests per second: the machine runs other engineers' tests.
DEFAULT_RATE = 150.0
MAX_SECONDS = 120.0
MAX_REQUESTS = 30_000


@dataclass
class LoadReport:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.ok + len(self.failures)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


class ConstantLoad:
    """`concurrency` loops, each sending one request at a time at rate/concurrency per second.
    A failure is an exception or any status but 200. keepalive=False opens a connection per
    request, so a refused or reset connection counts."""

    def __init__(
        self,
        base_url: str,
        *,
        rate: float = DEFAULT_RATE,
        concurrency: int = 8,
        keepalive: bool = True,
        ids: int = 50,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self.base_url = base_url
        self.rate = rate
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.ids = ids
        self.max_seconds = max_seconds
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _loop(self, client: httpx.AsyncClient, index: int, deadline: float) -> None:
        interval = self.concurrency / self.rate
        next_at = time.monotonic() + index * interval / self.concurrency
        n = index
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.report.sent >= MAX_REQUESTS:
                return
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            n += self.concurrency
            path = f"/items/{n % self.ids + 1}"
            started = time.monotonic()
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                self.report.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code == 200:
                self.report.ok += 1
                self.report.latencies.append(time.monotonic() - started)
            else:
                self.report.failures.append(f"{path}: {response.status_code} {response.text[:80]}")

    async def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=self.concurrency,
            max_keepalive_connections=self.concurrency if self.keepalive else 0,
        )
        deadline = time.monotonic() + self.max_seconds
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=10.0) as client:
            await asyncio.gather(
                *(self._loop(client, i, deadline) for i in range(self.concurrency))
            )

    def __enter__(self) -> ConstantLoad:
        self._thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
