from __future__ import annotations

import asyncio

import pytest

from c50k.cache.singleflight import SingleFlight


async def test_concurrent_calls_share_one_load() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0)  # One turn of the loop: every other caller joins meanwhile.
        return 42

    results = await asyncio.gather(*(flights.do("k", load) for _ in range(100)))
    assert results == [42] * 100
    assert loads == 1
    assert len(flights) == 0  # Done loads are not kept.


async def test_sequential_calls_load_again() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    counter = iter(range(10))

    async def load() -> int:
        return next(counter)

    assert await flights.do("k", load) == 0
    assert await flights.do("k", load) == 1


async def test_error_reaches_every_waiter_and_is_not_kept() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def failing() -> int:
        await asyncio.sleep(0)  # One turn of the loop: every other caller joins meanwhile.
        raise RuntimeError("boom")

    results = await asyncio.gather(
        *(flights.do("k", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)

    async def working() -> int:
        return 7

    assert await flights.do("k", working) == 7


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 1

    impatient = asyncio.ensure_future(flights.do("k", load))
    patient = asyncio.ensure_future(flights.do("k", load))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_forget_detaches_a_running_load() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    values = iter([1, 2])

    async def load() -> int:
        value = next(values)
        if value == 1:
            await release.wait()
        return value

    first = asyncio.ensure_future(flights.do("k", load))
    await asyncio.sleep(0)
    flights.forget("k")
    assert await flights.do("k", load) == 2  # A new load, not the detached one.
    release.set()
    assert await first == 1
