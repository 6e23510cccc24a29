"""The benchmark's systems under test, started as `c50k bench` starts them: the mock upstream,
the two baselines, the nginx ceiling and c50k, each on two loopback addresses.

The baselines must answer exactly what c50k answers, errors included, or the comparison
measures different work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import pytest

from c50k.bench.targets import (
    Target,
    mock_upstream,
    posts_template,
    render_nginx_conf,
    start_c50k,
    start_ceiling,
    start_naive,
    start_straightforward,
)
from c50k.items.demo import demo_post
from c50k.stack.process import ProcessError, free_port

pytestmark = pytest.mark.e2e

ADDRESSES = ["127.0.0.1", "127.0.0.2"]
BASELINES_DIR = Path(__file__).resolve().parents[2] / "bench" / "baselines"
# The mock's ids run 1..POSTS, so /items/POSTS has a related item that does not exist.
POSTS = 100
AGGREGATE_1 = {"main_item": demo_post(1), "related_item": demo_post(2)}


class StartBaseline(Protocol):
    def __call__(
        self,
        workdir: Path,
        port: int,
        addresses: list[str],
        upstream_template: str,
        *,
        baselines_dir: Path,
        workers: int | None = None,
    ) -> Target: ...


BASELINES = [
    pytest.param(start_naive, id="naive"),
    pytest.param(start_straightforward, id="straightforward"),
]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with mock_upstream(tmp_path_factory.mktemp("upstream"), posts=POSTS) as target:
        yield target


def get_json(url: str) -> Any:
    response = httpx.get(url, timeout=10.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return orjson.loads(response.content)


def control(upstream: Target, **changes: object) -> None:
    httpx.put(f"{upstream.base_url}/control", json=changes).raise_for_status()


def assert_one_master_and_its_workers(target: Target, workers: int, helpers: int = 0) -> None:
    """`helpers`: other children of the master (c50k's metrics exporter)."""
    pids = target.server_pids()
    assert pids[0] == target.processes[0].pid
    assert len(pids) == 1 + workers + helpers, pids
    for pid in pids:
        assert Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("start", BASELINES)
def test_baseline_answers_what_c50k_answers(
    start: StartBaseline, upstream: Target, tmp_path: Path
) -> None:
    target = start(
        tmp_path,
        free_port(),
        ADDRESSES,
        posts_template(upstream),
        baselines_dir=BASELINES_DIR,
        workers=2,
    )
    try:
        assert_one_master_and_its_workers(target, workers=2)
        for url in target.urls():
            assert get_json(f"{url}/health") == {"status": "ok"}
            assert get_json(f"{url}/items/1") == AGGREGATE_1
        url = target.base_url
        assert get_json(f"{url}/items/{POSTS}")["related_item"] == {"error": "Item not found"}
        try:
            control(upstream, error_rate=1.0, status=503)
            status_error = {"error": "External service returned status 503"}
            assert get_json(f"{url}/items/1") == {
                "main_item": status_error,
                "related_item": status_error,
            }
            control(upstream, error_rate=0.0, invalid_json=True)
            unexpected = {"error": "An unexpected error occurred"}
            assert get_json(f"{url}/items/1") == {
                "main_item": unexpected,
                "related_item": unexpected,
            }
        finally:
            control(upstream, error_rate=0.0, status=500, invalid_json=False)
    finally:
        target.stop()
    assert not target.processes[0].running()


@pytest.mark.parametrize("start", BASELINES)
def test_baseline_reports_an_unreachable_upstream(start: StartBaseline, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/posts/{{id}}"
    target = start(tmp_path, free_port(), ADDRESSES, closed, baselines_dir=BASELINES_DIR, workers=2)
    try:
        unavailable = {"error": "External service unavailable"}
        for url in target.urls():
            assert get_json(f"{url}/items/1") == {
                "main_item": unavailable,
                "related_item": unavailable,
            }
    finally:
        target.stop()


def test_a_baseline_that_cannot_boot_fails_with_its_log(tmp_path: Path) -> None:
    # An empty directory instead of bench/baselines: the workers cannot import naive:app.
    with pytest.raises(ProcessError, match="naive") as failure:
        start_naive(
            tmp_path,
            free_port(),
            ADDRESSES,
            "http://127.0.0.1:1/{id}",
            baselines_dir=tmp_path,
            workers=1,
        )
    assert "No module named 'naive'" in str(failure.value)


def test_ceiling_answers_exactly_the_body(tmp_path: Path) -> None:
    # Quote, backslash and dollar are special in nginx's config; the body must survive them.
    body = orjson.dumps({**AGGREGATE_1, "note": 'it\'s $5 \\ "quoted"'})
    target = start_ceiling(tmp_path, free_port(), ADDRESSES, body, workers=2)
    try:
        assert_one_master_and_its_workers(target, workers=2)
        for url in target.urls():
            assert get_json(f"{url}/health") == {"status": "ok"}
            response = httpx.get(f"{url}/items/123", timeout=10.0)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.content == body
    finally:
        target.stop()
    assert target.processes[0].wait(0) == 0  # SIGQUIT: a graceful exit.


def test_ceiling_refuses_a_body_nginx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        render_nginx_conf(tmp_path, 8000, ADDRESSES, b"x" * 5000, workers=1)


def test_c50k_serves_on_every_address(upstream: Target, tmp_path: Path) -> None:
    # Needs C50K_SERVER_HOST to take a comma-separated list (ServerSettings.binds).
    env = {
        "C50K_UPSTREAM_URL": posts_template(upstream),
        "C50K_STORE_BACKEND": "memory",
        "C50K_CACHE_ENABLED": "false",
        "C50K_SERVER_DRAIN_SECONDS": "0",
        "C50K_METRICS_PORT": str(free_port()),
    }
    target = start_c50k(tmp_path, free_port(), ADDRESSES, workers=2, env=env)
    try:
        assert_one_master_and_its_workers(target, workers=2, helpers=1)
        for url in target.urls():
            assert get_json(f"{url}/items/1") == AGGREGATE_1
    finally:
        target.stop()
