"""Real processes on free ports: `c50k upstream` and `c50k serve` (gunicorn, 2 workers)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from c50k.stack.process import ManagedProcess, free_port, http_ok

START_TIMEOUT = 30.0


@dataclass
class Upstream:
    url: str
    process: ManagedProcess

    @property
    def template(self) -> str:
        return f"{self.url}/posts/{{id}}"

    def stats(self) -> dict[str, object]:
        stats: dict[str, object] = httpx.get(f"{self.url}/stats").json()
        return stats

    def count(self, item_id: int) -> int:
        by_id = self.stats()["by_id"]
        assert isinstance(by_id, dict)
        return int(by_id.get(str(item_id), 0))

    def reset(self) -> None:
        httpx.post(f"{self.url}/stats/reset").raise_for_status()

    def control(self, **changes: object) -> None:
        httpx.put(f"{self.url}/control", json=changes).raise_for_status()


@dataclass
class Service:
    url: str
    process: ManagedProcess


def start_upstream(tmp: Path, *args: str) -> Upstream:
    port = free_port()
    process = ManagedProcess(
        "c50k upstream",
        [sys.executable, "-m", "c50k", "upstream", "--port", str(port), *args],
        tmp / f"upstream-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    _wait_or_stop(process, f"{url}/health")
    return Upstream(url, process)


def start_service(
    tmp: Path,
    upstream_template: str | None,
    env: Mapping[str, str] | None = None,
    workers: int = 2,
) -> Service:
    port = free_port()
    environment = {
        **os.environ,
        "C50K_STORE_SQLITE_PATH": str(tmp / f"items-{port}.sqlite3"),
        "C50K_SERVER_DRAIN_SECONDS": "0",
        # Each service's metrics exporter on a port of its own (the default is shared).
        "C50K_METRICS_PORT": str(free_port()),
        **({"C50K_UPSTREAM_URL": upstream_template} if upstream_template else {}),
        **(env or {}),
    }
    process = ManagedProcess(
        "c50k serve",
        [sys.executable, "-m", "c50k", "serve", "--port", str(port), "--workers", str(workers)],
        tmp / f"serve-{port}.log",
        env=environment,
    ).start()
    url = f"http://127.0.0.1:{port}"
    _wait_or_stop(process, f"{url}/ready")
    return Service(url, process)


def scrape_metrics(port: int) -> str:
    """The text of a service's metrics exporter (C50K_METRICS_PORT)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
    response.raise_for_status()
    return response.text


def _wait_or_stop(process: ManagedProcess, url: str) -> None:
    try:
        process.wait_until(lambda: http_ok(url), START_TIMEOUT)
    except BaseException:
        process.stop()  # Never leave a server behind that did not come up in time.
        raise


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    running = start_upstream(tmp_path_factory.mktemp("upstream"), "--posts", "100000")
    yield running
    running.process.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Service]:
    running = start_service(tmp_path_factory.mktemp("service"), upstream.template)
    yield running
    assert running.process.stop() == 0, running.process.log_tail()


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http
