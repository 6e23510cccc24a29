"""The interface every item store implements (SQLite now, PostgreSQL behind the same shape)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from c50k.types import ItemJson


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: int
    body: ItemJson


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredItem]
    # The id to pass as `after` for the next page; None when this page is the last.
    next_after: int | None


class ItemStore(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, item_id: int) -> ItemJson | None: ...

    async def put(self, item_id: int, body: ItemJson) -> None: ...

    async def delete(self, item_id: int) -> bool: ...

    async def page(self, after: int, limit: int) -> Page: ...

    async def check(self) -> None:
        """Raise StoreUnavailable unless the store answers a trivial query now."""
        ...


def page_of(items: list[StoredItem], limit: int) -> Page:
    """A page from up to `limit + 1` rows in id order: the extra row only proves there is more."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_after=items[-1].item_id)
    return Page(items=items, next_after=None)
