"""`c50k stack up | status | down` and `c50k db status` as a user runs them, and `c50k serve`
(gunicorn, 2 workers) on the stack's settings file: sharded PostgreSQL behind PgBouncer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from c50k.bench.database import scrape
from c50k.stack.process import free_port
from c50k.stack.state import StackState
from c50k.store.consistency import HEADER
from tests.e2e.conftest import start_service
from tests.waiting import wait_until

C50K = [sys.executable, "-m", "c50k"]


def c50k(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*C50K, *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )


def store_reads(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("c50k_store_reads_total"))


def scrape_until(port: int, done: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """The exporter's samples once `done` holds (workers publish every interval)."""
    samples: dict[str, float] = {}

    def scraped() -> bool:
        samples.clear()
        samples.update(scrape(port))
        return done(samples)

    wait_until(scraped, "scraped", 10.0, detail=lambda: str(samples))
    return samples


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's own temporary directory: that one is private to root, and as root
    # the clusters run as the postgres user.
    path = Path(tempfile.mkdtemp(prefix="c50k-stack-e2e-"))
    path.chmod(0o711)
    yield path / "stack"
    shutil.rmtree(path, ignore_errors=True)


def test_stack_up_serve_status_down(tmp_path: Path, state_dir: Path) -> None:
    up = c50k(
        "stack", "up", "--state-dir", str(state_dir), "--shards", "2", "--replicas", "1",
        "--pgbouncer",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        state = StackState.load(state_dir)
        kinds = sorted(s.kind for s in state.services)
        assert kinds == ["pgbouncer"] * 2 + ["postgres"] * 4 + ["redis"]
        status = c50k("stack", "status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("running") == 7

        env = {**os.environ, "C50K_SETTINGS_FILE": str(state.settings_path)}
        db = c50k("db", "status", env=env)
        assert db.returncode == 0, db.stdout + db.stderr
        assert db.stdout.count("streaming") == 2
        assert db.stdout.count("0002") == 4  # Every server, replicas too, at the head revision.

        metrics_port = free_port()
        service = start_service(
            tmp_path,
            None,
            env={
                "C50K_SETTINGS_FILE": str(state.settings_path),
                "C50K_METRICS_PORT": str(metrics_port),
                "C50K_METRICS_FLUSH_INTERVAL_SECONDS": "0.2",
            },
        )
        try:
            with httpx.Client(base_url=service.url, timeout=10.0) as http:
                tokens = {}
                for item_id in range(1, 21):
                    written = http.put(f"/items/{item_id}", json={"n": item_id})
                    assert written.status_code == 200, written.text
                    tokens[item_id] = written.headers[HEADER]
                shards = {token.split("/")[0] for token in tokens.values()}
                assert shards == {"0", "1"}  # Twenty ids landed on both shards.
                for item_id in range(1, 20):
                    answer = http.get(f"/items/{item_id}", headers={HEADER: tokens[item_id]})
                    assert orjson.loads(answer.content) == {
                        "main_item": {"id": item_id, "n": item_id},
                        "related_item": {"id": item_id + 1, "n": item_id + 1},
                    }
                page = http.get("/items", params={"limit": 15}).json()
                assert [i["id"] for i in page["items"]] == list(range(1, 16))
            # Every read above, by shard and by the role that answered; pools and lag.
            # Both sides of 19 GETs (a token skips the cache) and one page read per shard.
            scrape = scrape_until(metrics_port, lambda s: store_reads(s) >= 2 * 19 + 2)
            assert store_reads(scrape) == 2 * 19 + 2
            assert scrape['c50k_store_pool_wait_seconds_count{role="primary",shard="0"}'] > 0
            assert any(k.startswith("c50k_store_replication_lag_seconds") for k in scrape)
        finally:
            assert service.process.stop() == 0, service.process.log_tail()
    finally:
        down = c50k("stack", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not any(s.running() for s in state.services)  # No process left behind.
    assert c50k("stack", "status", "--state-dir", str(state_dir)).returncode == 1
