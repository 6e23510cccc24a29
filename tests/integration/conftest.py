"""The mock upstream served in-process, and a redis-server, on free ports, for the integration
tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from c50k.stack.process import free_port
from c50k.stack.redis import RedisServer, running_redis
from c50k.upstream.mockserver import Behaviour, MockUpstream, start


@asynccontextmanager
async def served_mock(posts: int, seed: int) -> AsyncIterator[tuple[MockUpstream, str]]:
    upstream = MockUpstream(Behaviour(posts=posts), seed=seed)
    port = free_port()
    server = await start("127.0.0.1", port, upstream)
    try:
        yield upstream, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        upstream.close_connections()
        await server.wait_closed()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port (the stack's code); it fails, never
    skips, when redis-server is not installed."""
    with running_redis(tmp_path / "redis") as server:
        yield server
