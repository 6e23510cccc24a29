"""Admission by waiting time: a worker refuses a request only when it has waited too long for
the event loop, while the queue stands above its limit, or near a resource limit; never for
a count of requests in flight (that old rule stays available, off by default).

Why waiting time and not a count. Fifty thousand clients that each wait for their answer (a
closed loop) regulate themselves: arrivals equal completions, so the queue is long (at 12,500
connections a worker it is a few seconds deep) but stable, and every one of those requests must
be answered. A count-based limit refused cache hits costing ~40 µs in such a loop. Only an
open-model overload, arrivals above capacity for as long as they last, grows the queue without
bound; only that is shed.

How long a request waited: runtime/protocol.py stamps each request when its head is read
(`scope[READ_AT_KEY]`), and the time from then to when the app starts it is its queueing delay.
Not in it: the time its bytes spent in the kernel before the loop read them, at most one loop
iteration.

The rules:
- a request that waited longer than `max_queue_seconds` to start is late: it is answered 503 at
  once, and the queue *stands* (CoDel's standing queue, RFC 8289, applied to requests): the
  protocol refuses new requests at the door, before they cost a task (a fast 503), until a
  request starts having waited less than half the maximum, or nothing is queued or in work;
- with a queue-delay target set by the operator, the worker also keeps an adaptive limit on the
  requests it holds (queued or in work), in the manner of Netflix's concurrency-limits: when
  every request answered during one interval spent at least the target in the worker (CoDel's
  test, on the whole time in the worker: see WorkLimit), the limit falls by a fifth, but never
  below what the worker answers within the target at its present rate; otherwise, while the
  limit is in use, it grows by a tenth; after `RELEASE_WINDOWS` quiet intervals it is lifted.
  Beyond the limit the door refuses, and while it holds, requests that waited past the target
  to start are shed.
A worker whose memory passes its limit refuses at the door too until it falls back below.
Refusals are JSON 503s with Retry-After; /health and /ready are never refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.types import Scope

logger = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# A worker over its memory limit takes requests again below this share of it.
MEMORY_RESUME = 0.9

READ_AT_KEY = "c50k.read_at"  # time.monotonic() when the protocol read the request's head.
# A load balancer's checks must see the process alive and ready even while it sheds.
EXEMPT_PATHS = frozenset({"/health", "/ready"})

SHED_BODY = b'{"detail":"Service overloaded, retry later"}'
SHED_HEADERS = (
    (b"content-type", b"application/json"),
    (b"content-length", str(len(SHED_BODY)).encode()),
    (b"retry-after", b"1"),
)

# Why a request was refused (the `reason` label of c50k_http_requests_shed_total).
QUEUE = "queue"  # It waited too long, or arrived while the queue stood above its limit.
MEMORY = "memory"  # The worker's memory passed its limit.
CONNECTIONS = "connections"  # It came on a connection beyond the worker's connection cap.
IN_FLIGHT = "in_flight"  # The optional count rule (C50K_SERVER_MAX_IN_FLIGHT).
REASONS = (QUEUE, MEMORY, CONNECTIONS, IN_FLIGHT)


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How long requests may wait: at most `max_queue_seconds` before work starts; with a
    `target_seconds` (0: none), the adaptive work limit keeps their time in the worker near
    it, judged every `interval_seconds`."""

    max_queue_seconds: float = 10.0
    target_seconds: float = 0.0
    interval_seconds: float = 0.1


class QueueDelay:
    """The standing-queue test on start delays against the maximum queue time. Pure: the
    caller passes each request's delay and the clock's reading, so tests drive it with a
    fake clock."""

    def __init__(self, policy: QueuePolicy) -> None:
        self.policy = policy
        self.standing = False

    def admit(self, waited: float) -> bool:
        """A request starts after waiting `waited` seconds: run it (True) or shed it."""
        maximum = self.policy.max_queue_seconds
        if waited > maximum:
            self.standing = True
            return False
        if waited < maximum / 2:
            self.standing = False
        return True

    def drained(self) -> None:
        """Nothing is queued or in work: whatever stood has gone."""
        self.standing = False


# The adaptive limit's steps (Netflix's AIMD limit backs off by a tenth to a fifth).
DECREASE = 0.8
INCREASE = 1.1
MIN_LIMIT = 4
# Quiet intervals (every answer faster than the target, the limit unused) before it is lifted.
RELEASE_WINDOWS = 50
# A limit is "in use" when what the worker held reached this share of it in the interval.
IN_USE = 0.9


class WorkLimit:
    """With a queue-delay target: an adaptive limit on the requests a worker holds.

    What it judges is the whole time a request spent in the worker, from its head read to its
    answer, not only the wait before work starts: on the expensive path the queue forms inside
    the work (requests waiting for the event loop between awaits, for a pooled upstream
    connection), where the start delay does not see it. So the target bounds time in the
    worker, and belongs above the slowest normal request (the upstream's own latency, with a
    margin); a target below it keeps the limit low until the operator raises the target.
    Pure, on the caller's clock."""

    def __init__(self, target: float, interval: float) -> None:
        self.target = target
        self.interval = interval
        self.limit: float | None = None  # None: no limit (no overload seen lately).
        self._window_start: float | None = None
        self._fastest = float("inf")
        self._most_held = 0
        self._answered = 0
        self._quiet = 0

    def allows(self, held: int) -> bool:
        return self.limit is None or held < self.limit

    def finished(self, in_worker: float, now: float, held: int) -> None:
        """A request was answered `in_worker` seconds after its head was read; the worker
        still holds `held` requests."""
        if self._window_start is None:
            self._window_start = now
        self._fastest = min(self._fastest, in_worker)
        self._most_held = max(self._most_held, held + 1)
        self._answered += 1
        elapsed = now - self._window_start
        if elapsed >= self.interval:
            self._adapt(elapsed)
            self._window_start = now
            self._fastest, self._most_held, self._answered = float("inf"), 0, 0

    def _adapt(self, elapsed: float) -> None:
        if self._fastest >= self.target:
            # A standing queue: even the fastest answer of the interval took the target. A
            # fifth less, but never below what the worker answers within the target at its
            # present rate (Little's law): a loop slowed by refusals themselves must not starve.
            base = self.limit if self.limit is not None else self._most_held
            floor = self._answered * self.target / elapsed
            self.limit = max(MIN_LIMIT, floor, base * DECREASE)
            self._quiet = 0
        elif self.limit is not None:
            if self._most_held >= IN_USE * self.limit:
                self.limit = self.limit * INCREASE + 1
                self._quiet = 0
            else:
                self._quiet += 1
                if self._quiet >= RELEASE_WINDOWS:
                    self.limit = None
                    self._quiet = 0


class Admission:
    """One worker's admission state, shared by the protocol (the door) and the app (the start
    of work). Counters are plain ints; the metrics sampler publishes them."""

    def __init__(
        self,
        policy: QueuePolicy,
        *,
        max_in_flight: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = QueueDelay(policy)
        self.target = policy.target_seconds
        self.work_limit = (
            WorkLimit(policy.target_seconds, policy.interval_seconds)
            if policy.target_seconds
            else None
        )
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.queued = 0  # Let in at the door, not yet started.
        self.in_flight = 0  # Started and not yet answered.
        self.memory_high = False
        # Every reason from the start, so each shows in the metrics at 0.
        self.shed: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        # Told every started request's queueing delay (the metrics' histogram).
        self.observe_wait: Callable[[float], None] | None = None

    def at_door(self, scope: Scope) -> str | None:
        """The protocol has read a request's head: stamp it, and say why it must be refused
        now (None: let it in)."""
        if scope["path"] not in EXEMPT_PATHS:
            if self.memory_high:
                self.shed[MEMORY] += 1
                return MEMORY
            held = self.queued + self.in_flight
            if self.queue.standing:
                if held > 0:
                    self.shed[QUEUE] += 1
                    return QUEUE
                self.queue.drained()
            if self.work_limit is not None and not self.work_limit.allows(held):
                self.shed[QUEUE] += 1
                return QUEUE
        scope[READ_AT_KEY] = self.clock()
        self.queued += 1
        return None

    def at_start(self, scope: Scope) -> str | None:
        """The app starts a request: say why it must be shed (None: run it)."""
        read_at = scope.get(READ_AT_KEY)
        if read_at is not None:
            self.queued -= 1
            now = self.clock()
            waited = now - read_at
            if self.observe_wait is not None:
                self.observe_wait(waited)
            if scope["path"] in EXEMPT_PATHS:
                return None
            limited = self.work_limit is not None and self.work_limit.limit is not None
            if not self.queue.admit(waited) or (limited and waited > self.target):
                self.shed[QUEUE] += 1
                return QUEUE
        elif scope["path"] in EXEMPT_PATHS:
            return None
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            self.shed[IN_FLIGHT] += 1
            return IN_FLIGHT
        return None

    def at_end(self, scope: Scope) -> None:
        """The app has answered a request (started by `at_start`)."""
        read_at = scope.get(READ_AT_KEY)
        if read_at is not None and self.work_limit is not None:
            now = self.clock()
            self.work_limit.finished(now - read_at, now, self.queued + self.in_flight)

    @property
    def shedding(self) -> bool:
        """Refusing (some) new requests at the door: the queue stands, a work limit holds, or
        memory is high."""
        limited = self.work_limit is not None and self.work_limit.limit is not None
        return self.queue.standing or limited or self.memory_high

    @asynccontextmanager
    async def watching_memory(self, limit_bytes: int, interval: float) -> AsyncIterator[None]:
        """Compare the worker's resident memory with `limit_bytes` every `interval` seconds:
        refuse new requests above it, and again below 90% of it."""

        async def watch() -> None:
            while True:
                rss = resident_bytes()
                if rss is not None:
                    if rss > limit_bytes and not self.memory_high:
                        logger.warning(
                            "memory %d MB above the limit %d MB: refusing new requests",
                            rss >> 20,
                            limit_bytes >> 20,
                        )
                        self.memory_high = True
                    elif self.memory_high and rss < MEMORY_RESUME * limit_bytes:
                        logger.warning("memory %d MB: accepting requests again", rss >> 20)
                        self.memory_high = False
                await asyncio.sleep(interval)

        watcher = asyncio.ensure_future(watch())
        try:
            yield
        finally:
            watcher.cancel()


def resident_bytes() -> int | None:
    """This process's resident memory (Linux), or None where /proc does not tell."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None
