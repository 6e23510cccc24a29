from __future__ import annotations

import pytest

from c50k.api.fastpath import parse_item_id


@pytest.mark.parametrize(
    ("path", "item_id"),
    [
        ("/items/0", 0),
        ("/items/1", 1),
        ("/items/0001", 1),
        ("/items/9223372036854775807", 2**63 - 1),
    ],
)
def test_well_formed_ids_take_the_fast_path(path: str, item_id: int) -> None:
    assert parse_item_id(path) == item_id


@pytest.mark.parametrize(
    "path",
    [
        "/items/",
        "/items",
        "/items/-1",
        "/items/+1",
        "/items/1.0",
        "/items/1_000",
        "/items/ 1",
        "/items/٣",  # A digit, but not an ASCII one.
        "/items/9223372036854775808",
        "/items/00000000000000000001",  # 20 characters: FastAPI refuses it too.
        "/items/1/",
        "/health",
    ],
)
def test_everything_else_goes_to_fastapi(path: str) -> None:
    assert parse_item_id(path) is None
