"""How a failed side of an aggregate answer reads: the exact error objects of the API."""

from __future__ import annotations

import orjson

from c50k.exceptions import ItemNotFound, UpstreamStatusError, UpstreamUnavailable

UNAVAILABLE = b'{"error":"External service unavailable"}'
UNEXPECTED = b'{"error":"An unexpected error occurred"}'
NOT_FOUND = b'{"error":"Item not found"}'


def error_object(exc: BaseException) -> bytes:
    """The error object that stands in for an item whose resolution raised `exc`."""
    if isinstance(exc, ItemNotFound):
        return NOT_FOUND
    if isinstance(exc, UpstreamUnavailable | TimeoutError):
        return UNAVAILABLE
    if isinstance(exc, UpstreamStatusError):
        return orjson.dumps({"error": f"External service returned status {exc.status}"})
    return UNEXPECTED
