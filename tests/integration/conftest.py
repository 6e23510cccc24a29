"""The mock upstream served in-process, on a free port, for the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from c50k.stack.process import free_port
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
