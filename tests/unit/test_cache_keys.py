"""The Redis tier's pure rules: key names, TTL jitter, and the value envelope."""

from __future__ import annotations

import orjson
import pytest

from c50k.cache.envelope import Stored, decode, encode
from c50k.cache.keys import KeySpace, jittered_ms


def test_keys_carry_namespace_and_version() -> None:
    keys = KeySpace("c50k", 3)
    assert keys.item(42) == "c50k:v3:item:42"
    assert keys.lease(42) == "c50k:v3:lease:42"
    assert keys.channel == "c50k:v3:invalidate"
    assert KeySpace("c50k", 4).item(42) != keys.item(42)


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 10_000), (0.5, 10_500), (1.0, 11_000)])
def test_jitter_only_lengthens_up_to_its_share(draw: float, expected: int) -> None:
    assert jittered_ms(10.0, 0.1, draw) == expected


def test_jitter_never_reaches_zero() -> None:
    assert jittered_ms(0.0001, 0.0, 0.0) == 1


def test_envelope_is_orjson_and_keeps_the_item_bytes() -> None:
    body = b'{"id":7,"name":"lamp","price":1.25}'
    value = encode(body, 5000)
    assert orjson.loads(value) == [5000, orjson.loads(body)]
    assert decode(value) == Stored(body, 5000)


def test_envelope_of_not_found() -> None:
    assert decode(encode(None, 0)) == Stored(None, 0)


@pytest.mark.parametrize(
    "value", [b"", b"[]", b"[1]", b"[x,{}]", b'{"a":1}', b"[-1,{}]", b"[5,[1]]", b"[5,{}"]
)
def test_envelope_rejects_what_it_did_not_write(value: bytes) -> None:
    assert decode(value) is None
