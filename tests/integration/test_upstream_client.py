"""The pooled upstream client against the real mock upstream, served in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from c50k.exceptions import (
    ItemNotFound,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from c50k.items.demo import demo_post as post
from c50k.settings import UpstreamSettings
from c50k.stack.process import free_port
from c50k.upstream.client import UpstreamClient
from c50k.upstream.mockserver import MockUpstream
from tests.integration.conftest import served_mock


@pytest.fixture
async def mock() -> AsyncIterator[tuple[MockUpstream, str]]:
    async with served_mock(posts=100, seed=1) as served:
        yield served


async def client_for(url: str, **settings: float) -> UpstreamClient:
    client = UpstreamClient(UpstreamSettings(url=f"{url}/posts/{{id}}", **settings))
    await client.open()
    return client


async def test_fetches_the_post(mock: tuple[MockUpstream, str]) -> None:
    _app, url = mock
    client = await client_for(url)
    try:
        assert orjson.loads(await client.fetch(7)) == post(7)
    finally:
        await client.close()


async def test_connections_are_reused(mock: tuple[MockUpstream, str]) -> None:
    app, url = mock
    client = await client_for(url)
    try:
        for i in range(1, 21):
            await client.fetch(i)
        assert app.stats.connections == 1  # Twenty calls, one after another, one connection.
        headers = dict(app.stats.last_request_headers)
        assert headers.get(b"User-Agent") == b"c50k"
    finally:
        await client.close()


async def test_404_is_not_found(mock: tuple[MockUpstream, str]) -> None:
    _app, url = mock
    client = await client_for(url)
    try:
        with pytest.raises(ItemNotFound):
            await client.fetch(101)
    finally:
        await client.close()


async def test_status_error_carries_status_and_url(mock: tuple[MockUpstream, str]) -> None:
    app, url = mock
    app.behaviour.update({"error_rate": 1.0, "status": 503})
    client = await client_for(url)
    try:
        with pytest.raises(UpstreamStatusError) as raised:
            await client.fetch(1)
        assert raised.value.status == 503
        assert raised.value.url == f"{url}/posts/1"
    finally:
        await client.close()


async def test_invalid_json_is_invalid_response(mock: tuple[MockUpstream, str]) -> None:
    app, url = mock
    app.behaviour.update({"invalid_json": True})
    client = await client_for(url)
    try:
        with pytest.raises(UpstreamInvalidResponse, match="invalid JSON"):
            await client.fetch(1)
    finally:
        await client.close()


async def test_timeout_is_unavailable(mock: tuple[MockUpstream, str]) -> None:
    app, url = mock
    app.behaviour.update({"latency_ms": 500})
    client = await client_for(url, timeout_seconds=0.05)
    try:
        with pytest.raises(UpstreamUnavailable):
            await client.fetch(1)
    finally:
        await client.close()


async def test_refused_connection_is_unavailable() -> None:
    client = await client_for(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(UpstreamUnavailable):
            await client.fetch(1)
    finally:
        await client.close()


async def test_oversized_body_is_invalid_response(mock: tuple[MockUpstream, str]) -> None:
    _app, url = mock
    client = await client_for(url, max_body_bytes=50)
    try:
        with pytest.raises(UpstreamInvalidResponse, match="too large"):
            await client.fetch(1)
    finally:
        await client.close()


async def test_redirects_are_not_followed() -> None:
    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://elsewhere.invalid/")

    app = web.Application()
    app.router.add_get("/posts/{id}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = await client_for(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(UpstreamStatusError) as raised:
            await client.fetch(1)
        assert raised.value.status == 302
    finally:
        await client.close()
        await runner.cleanup()


async def test_pool_is_bounded(mock: tuple[MockUpstream, str]) -> None:
    app, url = mock
    app.behaviour.update({"latency_ms": 50})
    client = await client_for(url, max_connections=4)
    try:
        await asyncio.gather(*(client.fetch(i) for i in range(1, 41)))
        assert app.stats.max_in_flight == 4
    finally:
        await client.close()


async def test_body_cut_short_by_a_closed_connection_is_unavailable() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b'{"id": 1, ')
        await writer.drain()
        writer.close()  # Forty-odd bytes short of the promised hundred.

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await client_for(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(UpstreamUnavailable):
            await client.fetch(1)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
