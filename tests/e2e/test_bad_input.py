"""Every kind of bad input gets a clear JSON 4xx, and the server keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "raw_id",
    ["abc", "-1", "1.5", "1.0", "+1", "1_000", "%201", "0x10", "9223372036854775808", "9" * 400],
)
def test_bad_item_id_is_422(client: httpx.Client, raw_id: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"/items/{raw_id}", json={})
        assert response.status_code == 422, (method, raw_id, response.text)
        assert response.headers["content-type"] == "application/json"
        assert "detail" in response.json()


def test_largest_id_has_no_related_item(client: httpx.Client) -> None:
    largest = 2**63 - 1
    response = client.get(f"/items/{largest}")
    assert response.status_code == 200
    assert response.json()["related_item"] == {"error": "Item not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "Body must be a JSON object, not an array"),
        (b'"text"', "Body must be a JSON object, not a string"),
        (b"null", "Body must be a JSON object, not null"),
        (b"42", "Body must be a JSON object, not a number"),
        (b"{not json", "Body is not valid JSON"),
        (b"", "Body is not valid JSON"),
    ],
)
def test_body_that_is_not_a_json_object_is_422(
    client: httpx.Client, body: bytes, message: str
) -> None:
    response = client.put("/items/5", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(message)


def test_body_id_must_match_path(client: httpx.Client) -> None:
    response = client.put("/items/5", json={"id": 6})
    assert response.status_code == 422
    assert "does not match" in response.json()["detail"]


def test_body_over_64_kib_is_413(client: httpx.Client) -> None:
    big = {"blob": "x" * 70_000}
    response = client.put("/items/5", json=big)
    assert response.status_code == 413
    assert response.json() == {"detail": "Body is larger than 65536 bytes"}


def test_chunked_body_over_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 8192

    response = client.put(
        "/items/5", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client: httpx.Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.put("/items/5", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 415
    assert response.json() == {"detail": "Content-Type must be application/json"}


def test_unknown_route_is_404(client: httpx.Client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/items/1"), ("PATCH", "/items/1"), ("DELETE", "/health"), ("POST", "/items")],
)
def test_wrong_method_is_405(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"after": "-2"}, {"after": "y"}]
)
def test_bad_page_query_is_422(client: httpx.Client, query: dict[str, str]) -> None:
    response = client.get("/items", params=query)
    assert response.status_code == 422
    assert "detail" in response.json()


def test_malformed_http_is_refused_and_server_keeps_serving(client: httpx.Client) -> None:
    url = urlsplit(str(client.base_url))
    assert url.hostname is not None
    assert url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=5) as raw:
        raw.sendall(b"GARBAGE / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")
    assert client.get("/health").status_code == 200


def test_openapi_documents_the_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/ready", "/items/{item_id}", "/items"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
