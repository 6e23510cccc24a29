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

The rule, CoDel's standing-queue test (RFC 8289) applied to requests instead of packets:
- a request that waited longer than `max_queue_seconds` is late: it is answered 503 at once;
- the queue *stands* when every request started during one `interval` waited at least the limit
  (the target when an operator sets one, else `max_queue_seconds`, with no interval), or when a
  late request was seen. While it stands, the protocol refuses new requests at the door, before
  they cost a task (a fast 503), and started requests that waited beyond the limit are shed.
  It stops standing once a request starts having waited less than half the limit (the queue has
  drained well below it), or when no request is queued at all.
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
    """How long requests may wait. With `target_seconds` 0 (the default) the limit is
    `max_queue_seconds` and a late request makes the queue stand at once; with a target, the
    queue stands when delays stayed at or above it for `interval_seconds`."""

    max_queue_seconds: float = 10.0
    target_seconds: float = 0.0
    interval_seconds: float = 0.5

    @property
    def limit(self) -> float:
        return self.target_seconds or self.max_queue_seconds

    @property
    def interval(self) -> float:
        return self.interval_seconds if self.target_seconds else 0.0


class QueueDelay:
    """The standing-queue test. Pure: the caller passes each started request's delay and the
    time, so tests drive it with a fake clock."""

    def __init__(self, policy: QueuePolicy) -> None:
        self.policy = policy
        self.standing = False
        self._above_since: float | None = None

    def admit(self, waited: float, now: float) -> bool:
        """A request starts after waiting `waited` seconds: run it (True) or shed it."""
        policy = self.policy
        limit = policy.limit
        if waited >= limit:
            if self._above_since is None:
                self._above_since = now
            if now - self._above_since >= policy.interval:
                self.standing = True
        else:
            self._above_since = None
            if waited < limit / 2:
                self.standing = False
        if waited > policy.max_queue_seconds:
            self.standing = True
            return False
        return not (self.standing and waited > limit)

    def drained(self) -> None:
        """Nothing is queued: whatever stood has gone."""
        self.standing = False
        self._above_since = None


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
            if self.queue.standing:
                if self.queued > 0:
                    self.shed[QUEUE] += 1
                    return QUEUE
                self.queue.drained()
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
            if not self.queue.admit(waited, now):
                self.shed[QUEUE] += 1
                return QUEUE
        elif scope["path"] in EXEMPT_PATHS:
            return None
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            self.shed[IN_FLIGHT] += 1
            return IN_FLIGHT
        return None

    @property
    def shedding(self) -> bool:
        """Refusing new requests at the door: the queue stands, or memory is high."""
        return self.queue.standing or self.memory_high

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
