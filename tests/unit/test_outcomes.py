from __future__ import annotations

import orjson
import pytest

from c50k.exceptions import (
    ItemNotFound,
    StoreUnavailable,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from c50k.items.outcomes import error_object

URL = "http://upstream/posts/1"


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (ItemNotFound(1), "Item not found"),
        (UpstreamUnavailable(URL, "connect refused"), "External service unavailable"),
        (TimeoutError(), "External service unavailable"),
        (UpstreamStatusError(URL, 500), "External service returned status 500"),
        (UpstreamStatusError(URL, 429), "External service returned status 429"),
        (UpstreamInvalidResponse(URL, "invalid JSON"), "An unexpected error occurred"),
        (StoreUnavailable("sqlite", "locked"), "An unexpected error occurred"),
        (ValueError("anything else"), "An unexpected error occurred"),
    ],
)
def test_error_objects_are_exactly_the_documented_ones(exc: BaseException, error: str) -> None:
    assert orjson.loads(error_object(exc)) == {"error": error}


def test_errors_carry_their_context() -> None:
    assert str(UpstreamStatusError(URL, 503)) == f"upstream {URL}: returned status 503"
    assert str(StoreUnavailable("sqlite", "database is locked")) == (
        "store sqlite: database is locked"
    )
    assert str(ItemNotFound(9)) == "item 9 not found"
