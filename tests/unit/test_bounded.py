"""The deadline around each Redis command (c50k.cache.shared.bounded)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from c50k.cache.shared import bounded


async def test_answers_in_time() -> None:
    async def answer() -> str:
        await asyncio.sleep(0)
        return "PONG"

    assert await bounded(answer(), 0.05) == "PONG"


async def test_a_silent_command_fails_soon_after_its_deadline_and_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def silent() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        await bounded(silent(), 0.02)
    assert cancelled.is_set()


async def test_an_answer_that_came_during_a_long_turn_counts() -> None:
    ours, redis = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)

    async def answer_then_block_the_loop() -> None:
        redis.send(b"+OK\r\n")  # Redis answers at once...
        time.sleep(0.05)  # noqa: ASYNC251 -- ...while one turn of the loop takes 50 ms.

    try:
        blocker = asyncio.ensure_future(answer_then_block_the_loop())
        assert await bounded(reader.readline(), 0.01) == b"+OK\r\n"
        await blocker
    finally:
        writer.close()
        redis.close()


async def test_errors_pass_through() -> None:
    async def failing() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        await bounded(failing(), 0.05)
