"""Reading a JSON object body with the limits the API promises (415, 413, 422)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from c50k.exceptions import BadRequest


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    if not is_json_media_type(request.headers.get("content-type")):
        raise BadRequest(415, "Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"Body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # Chunked bodies carry no length up front: count while reading, stop at the limit.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"Body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        value = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(422, f"Body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(value, dict):
        raise BadRequest(422, f"Body must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
