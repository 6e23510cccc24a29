"""Errors of c50k, one hierarchy, each carrying the context an operator needs.

    C50kError
    ├── ItemNotFound            no source holds the item
    ├── UpstreamError           the upstream HTTP API failed (carries the upstream's URL)
    │   ├── UpstreamUnavailable     connect error, reset, timeout
    │   ├── UpstreamStatusError     a non-2xx status other than 404
    │   └── UpstreamInvalidResponse a body that is not a JSON object, or too large
    ├── StoreError              the item store failed (carries the store's name)
    │   └── StoreUnavailable        the store cannot be reached or is busy; retry later
    └── BadRequest              a client's input the API refuses (status and message)

Domain code raises these; `c50k.api.errors` alone turns them into HTTP answers, and
`c50k.items.outcomes` turns them into the error objects of a partial answer.
"""

from __future__ import annotations


class C50kError(Exception):
    pass


class ItemNotFound(C50kError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"item {item_id} not found")
        self.item_id = item_id


class UpstreamError(C50kError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"upstream {url}: {detail}")
        self.url = url
        self.detail = detail


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamStatusError(UpstreamError):
    def __init__(self, url: str, status: int) -> None:
        super().__init__(url, f"returned status {status}")
        self.status = status


class UpstreamInvalidResponse(UpstreamError):
    pass


class StoreError(C50kError):
    def __init__(self, store: str, detail: str) -> None:
        super().__init__(f"store {store}: {detail}")
        self.store = store
        self.detail = detail


class StoreUnavailable(StoreError):
    pass


class BadRequest(C50kError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
