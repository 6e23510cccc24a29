"""Request deadlines without a timer per request.

asyncio.timeout() arms a loop timer per request; under uvloop each is a libuv timer handle to
create, insert, stop and close, and on the fan-out path that cost about 12% of a worker's CPU
(BENCHMARKS.md). Every request of a worker has the same deadline, so expiries come in the
order requests start: one FIFO queue and one periodic sweep cancel the late ones, to within
`resolution` seconds.

The deadline counts the worker's own time, not the time its event loop spent on other
requests. A saturated loop (50,000 busy connections on a few workers) takes seconds per
iteration, and every await of a load (a thread's answer, a socket's) waits one iteration: a
SQLite read that took 50 µs in its thread took 4-6 s of wall time to come back, and timed out
as "External service unavailable". So the sweep measures how late it runs (the loop's lag) and
the deadlines ignore it: each sweep advances their clock by at most `resolution`. The sources
keep their own wall-clock bounds (the upstream client's timeouts, the pools' timeouts), so a
hung source is still cut off.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from types import TracebackType


@dataclass(slots=True)
class _Watch:
    expires_at: float
    task: asyncio.Task[object]
    finished: bool = False
    expired: bool = False


class Deadlines:
    def __init__(self, seconds: float, resolution: float = 0.05) -> None:
        self.seconds = seconds
        self.resolution = resolution
        self._queue: deque[_Watch] = deque()
        self._sweeping = False
        self._lag = 0.0  # Loop time the sweeps ran late, in all: not the requests' time.
        self._swept_at = 0.0  # Loop time of the last sweep.

    def within(self) -> DeadlineScope:
        """`async with deadlines.within():` raises TimeoutError in the current task once
        the deadline has passed (like asyncio.timeout(seconds))."""
        return DeadlineScope(self)

    def _watch(self, task: asyncio.Task[object]) -> _Watch:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._sweeping:
            self._sweeping = True
            self._swept_at = now
            loop.call_later(self.resolution, self._sweep)
        # The deadlines' clock: never more than one resolution past the last sweep's.
        started = min(now, self._swept_at + self.resolution) - self._lag
        watch = _Watch(started + self.seconds, task)
        self._queue.append(watch)
        return watch

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        actual = loop.time()
        self._lag += max(0.0, actual - self._swept_at - self.resolution)
        self._swept_at = actual
        now = actual - self._lag
        queue = self._queue
        while queue and (queue[0].finished or queue[0].expires_at <= now):
            watch = queue.popleft()
            if not watch.finished:
                watch.expired = True
                watch.task.cancel()
        if queue:
            loop.call_later(self.resolution, self._sweep)
        else:
            self._sweeping = False

    def __len__(self) -> int:
        return len(self._queue)


class DeadlineScope:
    def __init__(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self._watch: _Watch | None = None

    async def __aenter__(self) -> DeadlineScope:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._watch = self._deadlines._watch(task)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        watch = self._watch
        if watch is None:
            return
        watch.finished = True
        # Our own cancellation, and no one else's pending: the timeout it stands for.
        if watch.expired and exc_type is asyncio.CancelledError and watch.task.uncancel() == 0:
            raise TimeoutError from exc
