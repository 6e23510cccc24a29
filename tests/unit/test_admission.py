"""Admission by waiting time: the rule on a fake clock, and the ASGI layer that applies it."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from c50k.api.admission import AdmissionControl
from c50k.api.shedding import (
    IN_FLIGHT,
    QUEUE,
    READ_AT_KEY,
    Admission,
    QueueDelay,
    QueuePolicy,
)
from tests.unit.fakes import Clock

DEFAULTS = QueuePolicy(max_queue_seconds=10.0)
TARGET = QueuePolicy(max_queue_seconds=10.0, target_seconds=0.1, interval_seconds=0.5)


def run_for(rule: QueueDelay, clock: Clock, seconds: float, waited: float) -> list[bool]:
    """Requests start every 10 ms for `seconds`, each having waited `waited`."""
    verdicts = []
    for _ in range(round(seconds / 0.01)):
        clock.now += 0.01
        verdicts.append(rule.admit(waited, clock.now))
    return verdicts


def test_a_long_stable_queue_within_the_maximum_is_served() -> None:
    # A closed loop of 50,000 connections: every request waits seconds, for minutes.
    rule, clock = QueueDelay(DEFAULTS), Clock()
    assert all(run_for(rule, clock, 300, waited=9.9))
    assert not rule.standing


def test_a_growing_queue_is_shed_and_then_refused_at_the_door() -> None:
    rule, clock = QueueDelay(DEFAULTS), Clock()
    waits = [i * 0.1 for i in range(150)]  # An open-model overload: 0 s to 15 s.
    verdicts = []
    for waited in waits:
        clock.now += 0.01
        verdicts.append(rule.admit(waited, clock.now))
    admitted = [w for w, ok in zip(waits, verdicts, strict=True) if ok]
    assert max(admitted) <= 10.0  # Nothing that waited past the maximum ran.
    assert not any(ok for w, ok in zip(waits, verdicts, strict=True) if w > 10.0)
    assert rule.standing  # New requests are refused at the door from now on.


def test_it_recovers_once_the_queue_drains_below_half_the_limit() -> None:
    rule, clock = QueueDelay(DEFAULTS), Clock()
    assert not rule.admit(11.0, clock.now)
    assert rule.standing
    assert rule.admit(6.0, clock.now + 0.1)  # Draining, not yet below half: still standing.
    assert rule.standing
    assert rule.admit(4.0, clock.now + 0.2)
    assert not rule.standing


def test_a_target_sheds_only_a_queue_that_stands_for_an_interval() -> None:
    rule, clock = QueueDelay(TARGET), Clock()
    # A burst: delays above the target for less than the interval are served.
    assert all(run_for(rule, clock, 0.4, waited=0.3))
    assert not rule.standing
    assert rule.admit(0.01, clock.now)  # The burst is over.
    # An overload: above the target for a whole interval, then shed.
    verdicts = run_for(rule, clock, 1.0, waited=0.3)
    assert all(verdicts[:49])
    assert not any(verdicts[51:])
    assert rule.standing
    # Requests that waited less than the target still run while it stands.
    assert rule.admit(0.08, clock.now)
    assert rule.standing
    assert rule.admit(0.04, clock.now)  # Below half the target: the queue has drained.
    assert not rule.standing


def test_the_count_of_requests_in_flight_never_matters_by_default() -> None:
    clock = Clock()
    admission = Admission(DEFAULTS, clock=clock)
    scopes = [http("/items/1") for _ in range(100_000)]
    assert all(admission.at_door(scope) is None for scope in scopes)
    clock.now += 1.0
    assert all(admission.at_start(scope) is None for scope in scopes)
    assert admission.queued == 0


def test_the_door_refuses_while_the_queue_stands_and_reopens_when_it_drains() -> None:
    clock = Clock()
    admission = Admission(DEFAULTS, clock=clock)
    early, late = http("/items/1"), http("/items/2")
    assert admission.at_door(early) is None
    clock.now += 1.0
    assert admission.at_door(late) is None
    clock.now += 10.0
    assert admission.at_start(early) == QUEUE  # Waited 11 s: late, and the queue stands.
    assert admission.at_door(http("/items/3")) == QUEUE  # Refused before it costs a task.
    assert admission.at_door(health := http("/health")) is None  # Checks always pass.
    assert admission.at_start(health) is None
    assert admission.at_start(late) is None  # Waited 10 s: within the maximum.
    # Nothing is queued any more: the next request is let in.
    assert admission.at_door(http("/items/4")) is None
    assert admission.shed[QUEUE] == 2


def test_the_count_rule_when_an_operator_asks_for_it() -> None:
    admission = Admission(DEFAULTS, max_in_flight=1)
    admission.in_flight = 1
    assert admission.at_start(http("/items/1")) == IN_FLIGHT
    assert admission.at_start(http("/ready")) is None


def test_memory_above_the_limit_refuses_at_the_door() -> None:
    admission = Admission(DEFAULTS)
    admission.memory_high = True
    assert admission.shedding
    assert admission.at_door(http("/items/1")) == "memory"
    assert admission.at_door(http("/health")) is None


class SlowApp:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http(path: str) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": []}


async def call(app: AdmissionControl, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_late_request_is_shed_with_a_json_503_and_retry_after() -> None:
    clock = Clock()
    inner = SlowApp()
    inner.release.set()
    admission = Admission(DEFAULTS, clock=clock)
    app = AdmissionControl(inner, admission)
    scope = http("/items/1")
    admission.at_door(scope)
    clock.now += 10.5
    shed = await call(app, scope)
    assert shed[0]["status"] == 503
    assert (b"retry-after", b"1") in shed[0]["headers"]
    assert (b"content-type", b"application/json") in shed[0]["headers"]
    assert shed[1]["body"] == b'{"detail":"Service overloaded, retry later"}'
    fresh = http("/items/2")
    admission.at_door(fresh)
    assert (await call(app, fresh))[0]["status"] == 200


async def test_requests_in_flight_are_counted_while_they_run() -> None:
    inner = SlowApp()
    admission = Admission(DEFAULTS)
    app = AdmissionControl(inner, admission)
    held = [asyncio.ensure_future(call(app, http("/items/1"))) for _ in range(50)]
    await asyncio.sleep(0)
    assert admission.in_flight == 50
    inner.release.set()
    assert all(m[0]["status"] == 200 for m in await asyncio.gather(*held))
    assert admission.in_flight == 0


def test_a_request_without_a_door_stamp_is_never_late() -> None:
    # Requests that did not come through c50k's protocol (an in-process client) have no
    # arrival time: only the count rule can refuse them.
    admission = Admission(DEFAULTS)
    assert READ_AT_KEY not in http("/items/1")
    assert admission.at_start(http("/items/1")) is None
