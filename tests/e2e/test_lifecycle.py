"""Graceful drain on SIGTERM, and the classic locust user against the real service."""

from __future__ import annotations

import asyncio
import csv
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from c50k.items.demo import demo_post as post
from tests.e2e.conftest import Service, Upstream, start_service
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_drains_then_finishes_in_flight_requests(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.control(latency_ms=1500)
    service = start_service(
        tmp_path,
        upstream.template,
        {
            "C50K_SERVER_DRAIN_SECONDS": "1.5",
            "C50K_UPSTREAM_TIMEOUT_SECONDS": "5",
            "C50K_REQUEST_DEADLINE_SECONDS": "6",
        },
    )
    try:
        asyncio.run(_drain_scenario(service, upstream))
        # Drain (1.5 s) + the last slow request: well inside the graceful timeout.
        assert service.process.wait(timeout=20) == 0
    finally:
        upstream.control(latency_ms=0)
        service.process.stop()
    log = service.process.log_path.read_text()
    assert "draining" in log
    assert "Traceback" not in log


async def _drain_scenario(service: Service, upstream: Upstream) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=20) as http:
        keep_alive = await http.get("/health")  # Opens a keep-alive connection to reuse below.
        assert keep_alive.status_code == 200
        # Ten requests whose items and related items are twenty distinct ids: each reaches
        # the upstream for its own id, whatever worker serves it.
        slow_ids = range(80_000, 80_020, 2)
        before = {i: upstream.count(i) for i in slow_ids}
        slow = [asyncio.create_task(http.get(f"/items/{i}")) for i in slow_ids]
        await eventually(
            lambda: all(upstream.count(i) > before[i] for i in slow_ids),
            "all ten waiting on the 1.5 s upstream",
        )

        service.process.send_signal(signal.SIGTERM)  # Sent by an orchestrator to stop the node.
        log = service.process.log_path
        await eventually(lambda: log.read_text().count("draining:") >= 2, "both workers draining")
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as fresh:
            ready = await fresh.get("/ready")
            health = await fresh.get("/health")
        assert ready.status_code == 503
        assert ready.json() == {"status": "draining"}
        assert ready.headers["connection"] == "close"
        assert health.status_code == 200  # Still alive, only leaving rotation.

        for item_id, response in zip(slow_ids, await asyncio.gather(*slow), strict=True):
            assert response.status_code == 200
            assert response.json()["main_item"] == post(item_id)

        # Past the drain, the listener is closed: new connections are refused.
        async def refused() -> bool:
            try:
                async with httpx.AsyncClient(base_url=service.url, timeout=1) as probe:
                    await probe.get("/health")
            except httpx.ConnectError:
                return True
            return False

        await eventually(refused, "new connections refused", 10.0)


def test_locust_user_runs_with_zero_failures(service: Service, tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    completed = subprocess.run(
        [
            sys.executable, "-m", "locust",
            "-f", str(ROOT / "bench" / "locustfile.py"),
            "--host", service.url,
            "--headless", "--users", "20", "--spawn-rate", "20", "--run-time", "8s",
            "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    with open(f"{prefix}_stats.csv", newline="") as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) >= 20
    assert int(total["Failure Count"]) == 0
    assert int(rows["/items/{id}"]["Request Count"]) > 0
    assert int(rows["/health"]["Request Count"]) > 0


def test_sigint_stops_at_once_even_with_requests_in_flight(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.control(latency_ms=5000)
    service = start_service(tmp_path, upstream.template, {"C50K_CACHE_ENABLED": "false"})
    try:

        async def in_flight_then_interrupt() -> None:
            async with httpx.AsyncClient(base_url=service.url, timeout=20) as http:
                slow = asyncio.create_task(http.get("/items/1"))
                await eventually(lambda: bool(upstream.stats()["in_flight"]), "at the upstream")
                service.process.send_signal(signal.SIGINT)  # Ctrl-C in a terminal.
                try:
                    cut = (await slow).status_code
                except httpx.TransportError:
                    cut = 0
                # Cut, not awaited: uvicorn answers a cancelled request 500 (or closes it).
                # SIGTERM is the graceful stop; SIGINT is for a terminal that wants out now.
                assert cut in {0, 500}

        asyncio.run(in_flight_then_interrupt())
        # Far below the graceful timeout (35 s) that a hung worker would wait out.
        assert service.process.wait(timeout=10) == 0
    finally:
        upstream.control(latency_ms=0)
        service.process.stop()
    assert "SIGKILL" not in service.process.log_path.read_text()
