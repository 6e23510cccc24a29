from __future__ import annotations

from c50k.cache.breaker import CircuitBreaker
from tests.unit.fakes import Clock


def test_opens_after_failures_in_a_row_and_skips_while_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, open_seconds=1.0, timer=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # Not in a row: starts over.
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "open"
    assert breaker.opened == 1
    assert not breaker.allow()
    clock.now = 0.99
    assert not breaker.allow()


def test_half_open_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_seconds=1.0, timer=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()
    assert breaker.state == "half-open"
    assert not breaker.allow()  # The trial is still running.
    breaker.success()
    assert breaker.allow()
    assert breaker.failures_in_a_row == 0


def test_failed_trial_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=5, open_seconds=1.0, timer=clock)
    for _ in range(5):
        breaker.failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    assert breaker.opened == 2
    assert not breaker.allow()
    clock.now = 2.0
    assert breaker.allow()


def test_a_cancelled_trial_lets_the_next_one_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_seconds=1.0, timer=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()
