"""GET /items/{id} against the real gunicorn service and the real mock upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from c50k.items.demo import demo_post as post
from c50k.stack.process import free_port
from tests.e2e.conftest import Service, Upstream, start_service

pytestmark = pytest.mark.e2e


@pytest.fixture
def faults(upstream: Upstream) -> Iterator[Upstream]:
    yield upstream
    upstream.control(latency_ms=0, jitter_ms=0, error_rate=0, status=500, invalid_json=False)


def test_health_is_exactly_ok(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'
    assert response.json() == {"status": "ok"}


def test_ready_names_every_check(client: httpx.Client) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"store": "ok", "cache": "ok", "upstream": "ok"},
    }


def test_item_and_related_item_from_upstream(client: httpx.Client) -> None:
    response = client.get("/items/10")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-items-complete"] == "true"
    assert response.json() == {"main_item": post(10), "related_item": post(11)}


def test_both_sides_are_fetched_concurrently(client: httpx.Client, faults: Upstream) -> None:
    faults.control(latency_ms=300)
    faults.reset()
    assert client.get("/items/20").status_code == 200
    stats = faults.stats()
    assert stats["requests"] == 2
    # Sequential fetches would never overlap: the mock saw both in flight at once.
    assert stats["max_in_flight"] == 2


def test_missing_side_is_item_not_found(client: httpx.Client, upstream: Upstream) -> None:
    last = 100_000  # The upstream fixture serves posts 1..100000.
    response = client.get(f"/items/{last}")
    assert response.status_code == 200
    assert response.headers["x-items-complete"] == "false"
    assert response.json() == {"main_item": post(last), "related_item": {"error": "Item not found"}}
    both_missing = client.get(f"/items/{last + 5}").json()
    assert both_missing == {
        "main_item": {"error": "Item not found"},
        "related_item": {"error": "Item not found"},
    }


def test_upstream_status_becomes_error_object(client: httpx.Client, faults: Upstream) -> None:
    faults.control(error_rate=1.0, status=500)
    response = client.get("/items/30")
    assert response.status_code == 200
    assert response.headers["x-items-complete"] == "false"
    error = {"error": "External service returned status 500"}
    assert response.json() == {"main_item": error, "related_item": error}


def test_upstream_invalid_json_is_unexpected_error(client: httpx.Client, faults: Upstream) -> None:
    faults.control(invalid_json=True)
    body = client.get("/items/40").json()
    error = {"error": "An unexpected error occurred"}
    assert body == {"main_item": error, "related_item": error}


def test_upstream_timeout_is_unavailable(
    tmp_path_factory: pytest.TempPathFactory, faults: Upstream
) -> None:
    faults.control(latency_ms=1500)
    tmp = tmp_path_factory.mktemp("short-timeout")
    service = start_service(
        tmp,
        faults.template,
        {"C50K_UPSTREAM_TIMEOUT_SECONDS": "0.3", "C50K_REQUEST_DEADLINE_SECONDS": "0.5"},
    )
    try:
        response = httpx.get(f"{service.url}/items/50", timeout=10)
    finally:
        service.process.stop()
    error = {"error": "External service unavailable"}
    assert response.status_code == 200
    assert response.json() == {"main_item": error, "related_item": error}


def test_upstream_down_is_unavailable(tmp_path_factory: pytest.TempPathFactory) -> None:
    closed = f"http://127.0.0.1:{free_port()}/posts/{{id}}"  # Nothing listens there.
    service = start_service(tmp_path_factory.mktemp("down"), closed)
    try:
        response = httpx.get(f"{service.url}/items/1", timeout=10)
        ready = httpx.get(f"{service.url}/ready", timeout=10)
    finally:
        service.process.stop()
    error = {"error": "External service unavailable"}
    assert response.status_code == 200
    assert response.headers["x-items-complete"] == "false"
    assert response.json() == {"main_item": error, "related_item": error}
    # A flaky upstream must not take every node out of rotation: readiness stays 200.
    assert ready.status_code == 200


def test_cold_id_reaches_upstream_at_most_once_per_worker(
    service: Service, faults: Upstream
) -> None:
    faults.control(latency_ms=200)  # Long enough for all 200 requests to pile up on the miss.
    cold = 60_000

    async def storm() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=30) as http:
            return await asyncio.gather(*(http.get(f"/items/{cold}") for _ in range(200)))

    responses = asyncio.run(storm())
    assert all(r.status_code == 200 for r in responses)
    assert all(r.json()["main_item"] == post(cold) for r in responses)
    assert 1 <= faults.count(cold) <= 2  # The service runs 2 workers.
