"""The mock upstream itself: the instrument of the tests and benchmarks must be right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from c50k.items.demo import demo_post
from c50k.upstream.mockserver import MockUpstream
from tests.integration.conftest import served_mock


@pytest.fixture
async def mock() -> AsyncIterator[tuple[MockUpstream, str]]:
    async with served_mock(posts=10, seed=7) as served:
        yield served


async def test_posts_and_counters(mock: tuple[MockUpstream, str]) -> None:
    _upstream, url = mock
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/posts/3")).json() == demo_post(3)
        assert (await http.get("/posts/3?x=1")).json() == demo_post(3)
        assert (await http.get("/posts/11")).status_code == 404
        assert (await http.get("/posts/abc")).status_code == 404
        stats = (await http.get("/stats")).json()
    assert stats["requests"] == 4
    assert stats["by_id"] == {"3": 2, "11": 1}
    assert stats["by_status"] == {"200": 2, "404": 2}
    assert stats["connections"] == 1


async def test_control_changes_behaviour_and_rejects_nonsense(
    mock: tuple[MockUpstream, str],
) -> None:
    _upstream, url = mock
    async with httpx.AsyncClient(base_url=url) as http:
        changed = await http.put("/control", json={"error_rate": 1, "status": 502})
        assert changed.json()["status"] == 502
        assert (await http.get("/posts/1")).status_code == 502
        for bad in ({"nope": 1}, {"status": "x"}, {"invalid_json": 1}, [1]):
            assert (await http.put("/control", json=bad)).status_code == 422
        await http.put("/control", json={"error_rate": 0, "invalid_json": True})
        assert (await http.get("/posts/1")).content == b'{"id": '
        assert (await http.post("/stats/reset")).json() == {"status": "reset"}
        assert (await http.get("/stats")).json()["requests"] == 0
        assert (await http.delete("/stats")).status_code == 405
        assert (await http.get("/elsewhere")).status_code == 404


async def test_latency_and_in_flight(mock: tuple[MockUpstream, str]) -> None:
    upstream, url = mock
    upstream.behaviour.update({"latency_ms": 100})
    async with httpx.AsyncClient(base_url=url) as http:
        responses = await asyncio.gather(*(http.get(f"/posts/{i}") for i in range(1, 6)))
    assert [r.json()["id"] for r in responses] == [1, 2, 3, 4, 5]
    assert upstream.stats.max_in_flight == 5
    assert upstream.stats.in_flight == 0


async def test_pipelined_requests_are_answered_in_order(mock: tuple[MockUpstream, str]) -> None:
    upstream, url = mock
    upstream.behaviour.update({"latency_ms": 20, "jitter_ms": 30})
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"".join(b"GET /posts/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in (4, 2, 9)))
    await writer.drain()
    ids = []
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        ids.append(orjson.loads(await reader.readexactly(length))["id"])
    writer.close()
    assert ids == [4, 2, 9]


async def test_malformed_request_is_400_and_closed(mock: tuple[MockUpstream, str]) -> None:
    _upstream, url = mock
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in answer
