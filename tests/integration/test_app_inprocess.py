"""The app in-process (ASGI transport, lifespan run by the test): error mapping of failing
dependencies, which the end-to-end tests cannot provoke on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from c50k.api.app import create_app
from c50k.exceptions import StoreUnavailable
from c50k.settings import Settings
from c50k.store.base import Page
from c50k.store.memory import MemoryStore
from c50k.types import ItemJson


class BrokenStore(MemoryStore):
    """Writes find the store busy; paging hits a bug; reads work."""

    name = "broken"

    async def put(self, item_id: int, body: ItemJson) -> None:
        raise StoreUnavailable(self.name, "database is locked")

    async def page(self, after: int, limit: int) -> Page:
        raise RuntimeError("a bug with a secret in its message")

    async def check(self) -> None:
        raise StoreUnavailable(self.name, "disk gone")


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


@pytest.fixture
async def broken() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.model_validate({"store": {"backend": "memory"}})
    async for client in client_for(create_app(settings, store=BrokenStore())):
        yield client


async def test_busy_store_answers_503_with_retry_after(broken: httpx.AsyncClient) -> None:
    response = await broken.put("/items/1", json={"a": 1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"detail": "Service temporarily unavailable, retry later"}


async def test_unexpected_error_is_json_500_without_details(broken: httpx.AsyncClient) -> None:
    response = await broken.get("/items")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text


async def test_ready_names_the_failing_check(broken: httpx.AsyncClient) -> None:
    response = await broken.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["store"]
    assert body["checks"]["store"] == "failed: store broken: disk gone"
    assert body["checks"]["upstream"] == "not configured"


async def test_reads_still_work_when_writes_fail(broken: httpx.AsyncClient) -> None:
    response = await broken.get("/items/1")
    assert response.status_code == 200
    assert response.json()["main_item"] == {"error": "Item not found"}


async def test_fast_path_and_route_answer_alike() -> None:
    from c50k.api.routes import get_item  # noqa: PLC0415 -- the route function itself.

    settings = Settings.model_validate({"store": {"backend": "memory"}})
    store = MemoryStore()
    await store.put(1, b'{"id":1,"name":"one"}')
    app = create_app(settings, store=store)
    async for client in client_for(app):
        fast = await client.get("/items/1")
        routed = await get_item(1, app.state.services.items)
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.body
        assert fast.headers["x-items-complete"] == routed.headers["x-items-complete"] == "false"
        assert fast.headers["content-type"] == routed.headers["content-type"]


async def test_body_nested_deeper_than_can_be_stored_is_422() -> None:
    settings = Settings.model_validate({"store": {"backend": "memory"}})
    async for client in client_for(create_app(settings, store=MemoryStore())):
        deep = b'{"a":' + b"[" * 300 + b"]" * 300 + b"}"
        response = await client.put(
            "/items/1", content=deep, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["detail"].startswith("Body cannot be stored")
