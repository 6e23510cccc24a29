"""One pooled keep-alive HTTP client per worker process for the upstream API.

aiohttp, not httpx: on the fan-out path a shared aiohttp session spent a fraction of the
CPU per call that a shared httpx client did (BENCHMARKS.md, "Upstream client").

Only the operator's URL template is ever fetched: the item id is an int formatted into
`{id}`, so nothing a client sends can change the scheme, host or path.
"""

from __future__ import annotations

import aiohttp
import orjson

from c50k.exceptions import (
    ItemNotFound,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from c50k.settings import UpstreamSettings
from c50k.store.base import ItemJson


class UpstreamClient:
    def __init__(self, settings: UpstreamSettings) -> None:
        if settings.url is None:
            raise ValueError("UpstreamClient needs settings.url")
        self._template = settings.url
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def url_template(self) -> str:
        return self._template

    async def open(self) -> None:
        s = self._settings
        connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            limit_per_host=s.max_connections,
            keepalive_timeout=s.keepalive_seconds,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=s.timeout_seconds, sock_connect=s.connect_timeout_seconds
            ),
            # The service speaks for itself; no cookies kept between unrelated requests.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "c50k", "Accept": "application/json"},
            raise_for_status=False,
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def usable(self) -> bool:
        return self._session is not None and not self._session.closed

    async def fetch(self, item_id: int) -> ItemJson:
        """The item as compact JSON object text; raises an UpstreamError or ItemNotFound."""
        if self._session is None:
            raise UpstreamUnavailable(self._template, "client is closed")
        url = self._template.replace("{id}", str(item_id))
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                status = response.status
                if status == 404:
                    raise ItemNotFound(item_id)
                if not 200 <= status < 300:
                    raise UpstreamStatusError(url, status)
                length = response.content_length
                if length is not None and length > self._settings.max_body_bytes:
                    raise UpstreamInvalidResponse(url, f"body of {length} bytes is too large")
                body = await response.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise UpstreamUnavailable(url, f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            raise UpstreamInvalidResponse(url, f"{type(exc).__name__}: {exc}") from exc
        return _as_item_json(url, body, self._settings.max_body_bytes)


def _as_item_json(url: str, body: bytes, max_bytes: int) -> ItemJson:
    if len(body) > max_bytes:
        raise UpstreamInvalidResponse(url, f"body of {len(body)} bytes is too large")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamInvalidResponse(url, f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UpstreamInvalidResponse(url, f"expected a JSON object, got {type(value).__name__}")
    # Re-serialized compactly so cached items and stored items share one canonical form.
    return orjson.dumps(value)
