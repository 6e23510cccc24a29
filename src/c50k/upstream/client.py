"""One pooled keep-alive HTTP client per worker process for the upstream API.

pyreqwest (Rust reqwest/hyper), not aiohttp nor httpx: measured side by side for the fan-out,
a shared pyreqwest client spent 0.27x aiohttp's CPU per call and a shared httpx client 36x
(BENCHMARKS.md, "Upstream client"). It meets what the service needs of a client: a bound on
connections in use, a total timeout per call and a connect timeout, no redirects, and typed
errors. Its Tokio runtime runs on a thread of its own, started in `open()`, after the fork.

Only the operator's URL template is ever fetched: the item id is an int formatted into
`{id}`, so nothing a client sends can change the scheme, host or path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from time import perf_counter

import orjson
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    BodyDecodeError,
    ClientClosedError,
    DecodeError,
    PyreqwestError,
    TransportError,
)

from c50k.exceptions import (
    ItemNotFound,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from c50k.observability.metrics import PendingHistogram
from c50k.observability.requestid import request_id
from c50k.settings import UpstreamSettings
from c50k.types import ItemJson

# The `outcome` label of c50k_upstream_requests_total, by what fetch() raised.
OUTCOMES: dict[type[Exception], str] = {
    ItemNotFound: "not_found",
    UpstreamStatusError: "status_error",
    UpstreamUnavailable: "unavailable",
    UpstreamInvalidResponse: "invalid_response",
}


class UpstreamClient:
    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        metrics: PendingHistogram | None = None,
        trace_headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        if settings.url is None:
            raise ValueError("UpstreamClient needs settings.url")
        self._template = settings.url
        self._settings = settings
        self._client: Client | None = None
        self._metrics = metrics
        self._trace_headers = trace_headers

    async def open(self) -> None:
        s = self._settings
        self._client = (
            ClientBuilder()
            # Bounds the requests in flight, and so the connections in use.
            .max_connections(s.max_connections)
            .pool_max_idle_per_host(s.max_connections)
            .pool_idle_timeout(timedelta(seconds=s.keepalive_seconds))
            .timeout(timedelta(seconds=s.timeout_seconds))
            .connect_timeout(timedelta(seconds=s.connect_timeout_seconds))
            .follow_redirects(False)
            .error_for_status(False)
            .user_agent("c50k")
            .default_headers({"Accept": "application/json"})
            # The upstream is operator configuration; no proxy from the environment.
            .no_proxy()
            .build()
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def usable(self) -> bool:
        return self._client is not None

    async def fetch(self, item_id: int) -> ItemJson:
        """The item as compact JSON object text; raises an UpstreamError or ItemNotFound."""
        if self._metrics is None:
            return await self._fetch(item_id)
        started, outcome = perf_counter(), "ok"
        try:
            return await self._fetch(item_id)
        except Exception as exc:
            outcome = OUTCOMES.get(type(exc), "error")
            raise
        finally:
            self._metrics.observe((outcome,), perf_counter() - started)

    async def _fetch(self, item_id: int) -> ItemJson:
        client = self._client
        if client is None:
            raise UpstreamUnavailable(self._template, "client is closed")
        url = self._template.replace("{id}", str(item_id))
        limit = self._settings.max_body_bytes
        request = client.get(url)
        rid = request_id.get()
        if rid is not None:
            request = request.header("X-Request-ID", rid.decode("ascii"))
        if self._trace_headers is not None:
            for name, value in self._trace_headers().items():
                request = request.header(name, value)
        try:
            async with request.build_streamed() as response:
                status = response.status
                if status == 404:
                    raise ItemNotFound(item_id)
                if not 200 <= status < 300:
                    raise UpstreamStatusError(url, status)
                length = response.get_header("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise UpstreamInvalidResponse(url, f"body of {length} bytes is too large")
                chunk = await response.body_reader.read(limit + 1)
                body = b"" if chunk is None else chunk.to_bytes()
        except (TransportError, ClientClosedError, BodyDecodeError) as exc:
            # Connect errors, resets, timeouts, a body cut short by a closed connection (and a
            # client closed by shutdown).
            raise UpstreamUnavailable(url, f"{type(exc).__name__}: {exc}") from exc
        except (DecodeError, PyreqwestError) as exc:
            raise UpstreamInvalidResponse(url, f"{type(exc).__name__}: {exc}") from exc
        return _as_item_json(url, body, limit)


def _as_item_json(url: str, body: bytes, max_bytes: int) -> ItemJson:
    if len(body) > max_bytes:
        raise UpstreamInvalidResponse(url, f"body of more than {max_bytes} bytes is too large")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamInvalidResponse(url, f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UpstreamInvalidResponse(url, f"expected a JSON object, got {type(value).__name__}")
    # Re-serialized compactly so cached items and stored items share one canonical form.
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # orjson reads deeper nesting than it writes.
        raise UpstreamInvalidResponse(url, f"cannot re-encode: {exc}") from exc
