"""Item stores: where items written through the API live."""

from c50k.store.base import ItemStore, Page, StoredItem
from c50k.store.factory import open_store

__all__ = ["ItemStore", "Page", "StoredItem", "open_store"]
