"""A worker over its connection budget answers a JSON 503 at once instead of running out of
files, and keeps serving the connections it holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from c50k.stack.process import free_port
from tests.e2e.conftest import Upstream, scrape_metrics, start_service
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.e2e

BUDGET = 5


def test_connections_beyond_the_budget_get_503_and_service_recovers(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.control(latency_ms=800)
    metrics_port = free_port()
    service = start_service(
        tmp_path,
        upstream.template,
        {
            "C50K_SERVER_MAX_CONNECTIONS_PER_WORKER": str(BUDGET),
            "C50K_CACHE_ENABLED": "false",
            "C50K_METRICS_PORT": str(metrics_port),
            "C50K_METRICS_FLUSH_INTERVAL_SECONDS": "0.2",
        },
        workers=1,
    )
    try:

        async def crowd() -> tuple[list[httpx.Response], list[httpx.Response]]:
            limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=10) as h:
                # BUDGET slow requests hold every connection the worker takes; a crowd arrives.
                held = [asyncio.create_task(h.get(f"/items/{i}")) for i in range(1, BUDGET + 1)]
                await eventually(
                    lambda: upstream.stats()["in_flight"] == 2 * BUDGET,
                    "the held requests at the upstream",
                )
                crowd = await asyncio.gather(*(h.get(f"/items/{i}") for i in range(10, 36)))
                return list(await asyncio.gather(*held)), list(crowd)

        held, refused = asyncio.run(crowd())
        assert [r.status_code for r in held] == [200] * BUDGET
        assert [r.status_code for r in refused] == [503] * len(refused)
        assert all(r.headers["connection"] == "close" for r in refused)
        # The service's own JSON, never a server's plain text.
        assert all(r.json() == {"detail": "Service overloaded, retry later"} for r in refused)
        assert all(r.headers["retry-after"] == "1" for r in refused)

        upstream.control(latency_ms=0)
        after = httpx.get(f"{service.url}/items/1", timeout=10)
        assert after.status_code == 200
        assert after.headers["x-items-complete"] == "true"

        # The protocol answers these before the app: the worker counts them all the same.
        line = f'c50k_http_requests_shed_total{{reason="connections"}} {float(len(refused))}'
        wait_until(
            lambda: line in scrape_metrics(metrics_port).splitlines(),
            "the refusals published",
            10.0,
            detail=lambda: scrape_metrics(metrics_port),
        )
    finally:
        upstream.control(latency_ms=0)
        service.process.stop()
