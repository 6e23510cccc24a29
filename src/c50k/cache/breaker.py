"""A circuit breaker around Redis: after a few failures in a row, skip it for a while.

    closed ──(failures in a row ≥ threshold)──► open ──(open_seconds pass)──► half-open
      ▲                                           ▲                            │
      └────────────── the trial call succeeds ────┼──── the trial call fails ──┘

While open, callers skip Redis at once, so a Redis that is down or stalled costs requests
nothing; one trial call at a time finds out whether it is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        open_seconds: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._open_seconds = open_seconds
        self._timer = timer
        self.state: State = "closed"
        self.failures_in_a_row = 0
        self.opened = 0  # How many times it opened: for metrics.
        self._retry_at = 0.0
        self._trial = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._timer() < self._retry_at:
                return False
            self.state = "half-open"
            self._trial = False
        if self._trial:  # half-open: one call tries at a time.
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self.state = "closed"
        self.failures_in_a_row = 0
        self._trial = False

    def failure(self) -> None:
        self.failures_in_a_row += 1
        self._trial = False
        if self.state == "half-open" or self.failures_in_a_row >= self._threshold:
            if self.state != "open":
                self.opened += 1
            self.state = "open"
            self._retry_at = self._timer() + self._open_seconds

    def abandon(self) -> None:
        """A call that was cancelled: no verdict, but the next one may try."""
        self._trial = False
