"""PUT, DELETE and paging through the real service."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

BASE = 7_000_000_000  # Far from the upstream's ids, so the store alone answers.


def test_put_then_get(client: httpx.Client) -> None:
    item_id = BASE + 1
    response = client.put(f"/items/{item_id}", json={"name": "lamp", "tags": ["a", "b"]})
    assert response.status_code == 200
    assert response.json() == {"id": item_id, "name": "lamp", "tags": ["a", "b"]}
    body = client.get(f"/items/{item_id}").json()
    assert body["main_item"] == {"id": item_id, "name": "lamp", "tags": ["a", "b"]}
    assert body["related_item"] == {"error": "Item not found"}


def test_put_replaces_and_invalidates(client: httpx.Client) -> None:
    item_id = BASE + 10
    client.put(f"/items/{item_id}", json={"v": 1}).raise_for_status()
    client.put(f"/items/{item_id}", json={"v": 2, "id": item_id}).raise_for_status()
    # Two workers: each request may land on either; both must see the new value, because
    # neither had cached the item before the second write reached the store.
    for _ in range(4):
        assert client.get(f"/items/{item_id}").json()["main_item"] == {"id": item_id, "v": 2}


def test_put_on_worker_that_cached_invalidates_its_cache(client: httpx.Client) -> None:
    item_id = BASE + 20
    client.put(f"/items/{item_id}", json={"v": 1}).raise_for_status()
    with httpx.Client(base_url=str(client.base_url), timeout=10) as one_connection:
        # One keep-alive connection stays on one worker: it caches v1, then sees v2.
        assert one_connection.get(f"/items/{item_id}").json()["main_item"]["v"] == 1
        one_connection.put(f"/items/{item_id}", json={"v": 2}).raise_for_status()
        assert one_connection.get(f"/items/{item_id}").json()["main_item"]["v"] == 2


def test_delete(client: httpx.Client) -> None:
    item_id = BASE + 30
    client.put(f"/items/{item_id}", json={"x": True}).raise_for_status()
    assert client.delete(f"/items/{item_id}").status_code == 204
    missing = client.delete(f"/items/{item_id}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"Item {item_id} not found"}


def test_paging_walks_every_item_once_in_order(client: httpx.Client) -> None:
    first = BASE + 1000
    ids = [first + i for i in range(7)]
    for item_id in ids:
        client.put(f"/items/{item_id}", json={"n": item_id - first}).raise_for_status()
    seen: list[int] = []
    after = first - 1
    while True:
        page = client.get("/items", params={"after": after, "limit": 3}).json()
        seen.extend(item["id"] for item in page["items"])
        assert len(page["items"]) <= 3
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert [i for i in seen if i in ids] == ids
    assert seen == sorted(seen)
