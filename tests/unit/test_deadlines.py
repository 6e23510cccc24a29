from __future__ import annotations

import asyncio
import time

import pytest

from c50k.items.deadlines import Deadlines
from tests.waiting import eventually


async def forever() -> None:
    """Work that never ends by itself."""
    await asyncio.Event().wait()


async def test_work_past_the_deadline_times_out() -> None:
    deadlines = Deadlines(0.05, resolution=0.01)
    with pytest.raises(TimeoutError):
        async with deadlines.within():
            await forever()


async def test_work_within_the_deadline_is_untouched() -> None:
    deadlines = Deadlines(0.5, resolution=0.01)
    async with deadlines.within():
        await asyncio.sleep(0)
    # The sweep drops the finished watch instead of waiting for its expiry: nothing is left
    # to cancel, and nothing was.
    await eventually(lambda: len(deadlines) == 0, "the finished watch swept")
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_many_requests_share_one_sweep_and_only_late_ones_expire() -> None:
    deadlines = Deadlines(0.1, resolution=0.01)

    async def request(quick: bool) -> str:
        try:
            async with deadlines.within():
                await (asyncio.sleep(0) if quick else forever())
        except TimeoutError:
            return "late"
        return "ok"

    results = await asyncio.gather(*(request(quick=i % 2 == 1) for i in range(100)))
    assert results.count("ok") == 50
    assert results.count("late") == 50


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines(10, resolution=0.01)

    async def request() -> None:
        async with deadlines.within():
            await forever()

    task = asyncio.ensure_future(request())
    await eventually(lambda: len(deadlines) == 1, "the request under its deadline")
    task.cancel()  # A client gone, a shutdown: not a timeout.
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_task_can_use_several_deadlines_in_turn() -> None:
    deadlines = Deadlines(0.05, resolution=0.01)
    with pytest.raises(TimeoutError):
        async with deadlines.within():
            await forever()
    async with deadlines.within():  # The task is usable again after its timeout.
        await asyncio.sleep(0)
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_time_the_loop_spent_on_other_work_does_not_count() -> None:
    deadlines = Deadlines(0.1, resolution=0.01)

    async def request() -> str:
        try:
            async with deadlines.within():
                await asyncio.sleep(0.03)
        except TimeoutError:
            return "late"
        return "ok"

    def busy_loop() -> None:
        # Another request's work holds the event loop three deadlines long.
        until = time.monotonic() + 0.3
        while time.monotonic() < until:
            pass

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0)  # The request starts and waits on its "source".
    asyncio.get_running_loop().call_soon(busy_loop)
    assert await task == "ok"

    # The lag measured then does not make later deadlines longer: a slow source still times out.
    with pytest.raises(TimeoutError):
        async with deadlines.within():
            await asyncio.sleep(1)
