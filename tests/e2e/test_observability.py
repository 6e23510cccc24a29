"""Metrics, logs and traces of the real `c50k serve`: counts exact across workers and
restarts, a scrape that promtool accepts, JSON log lines and request ids that reach the
upstream, spans of the cache, store and upstream."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from c50k.stack.process import free_port
from tests.e2e.conftest import Service, Upstream, start_service
from tests.e2e.conftest import scrape_metrics as scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

FLUSH = "0.2"
SCRAPE_WAIT_SECONDS = 30.0
# The readiness polls of start_service are counted too; the tests count only these routes.
ROUTES = ("/items/{item_id}", "/health", "unmatched")
ATTEMPTS = 10


def metrics_env(port: int, **more: str) -> dict[str, str]:
    return {
        "C50K_METRICS_PORT": str(port),
        "C50K_METRICS_FLUSH_INTERVAL_SECONDS": FLUSH,
        **more,
    }


def total(text: str, sample_name: str, routes: tuple[str, ...] = ROUTES) -> float:
    found = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels.get("route") in routes:
                found += sample.value
    return found


def wait_for_total(port: int, sample_name: str, expected: float) -> str:
    """The scrape once the flushes have published `expected`; the caller asserts on what it
    holds."""
    wait_until(
        lambda: total(scrape(port), sample_name) >= expected,
        f"{expected:g} {sample_name} published",
        SCRAPE_WAIT_SECONDS,
        detail=lambda: f"{total(scrape(port), sample_name):g} published",
    )
    return scrape(port)


def upstream_headers(upstream: Upstream) -> dict[str, str]:
    """The headers of the last request the mock upstream received, names lower-cased."""
    headers = upstream.stats()["last_request_headers"]
    assert isinstance(headers, dict)
    return {str(name).lower(): str(value) for name, value in headers.items()}


def answered(client: httpx.Client, path: str) -> httpx.Response:
    """GET `path`, again when the connection failed before an answer: a worker that stops at
    max_requests closes connections it accepted but had not read yet. A request the app did
    count but whose answer was lost would show as one count too many. The retry goes at once:
    its connection waits in the listen backlog until a worker that is not stopping (a
    replacement, when both stop at once) accepts it."""
    for _ in range(ATTEMPTS - 1):
        try:
            return client.get(path)
        except httpx.TransportError:
            continue
    return client.get(path)


def send_mix(url: str, rounds: int) -> int:
    """Requests of every kind, each on a new connection so they spread over the workers."""
    sent = 0
    with httpx.Client(base_url=url, timeout=10.0, headers={"Connection": "close"}) as client:
        for i in range(rounds):
            assert answered(client, f"/items/{1 + i % 30}").status_code == 200
            assert answered(client, "/health").status_code == 200
            assert answered(client, "/no-such-route").status_code == 404
            assert answered(client, "/items/not-a-number").status_code == 422
            sent += 4
    return sent


def assert_counted_exactly(
    service: Service, metrics_port: int, rounds: int, settle: Callable[[], None] = lambda: None
) -> float:
    """Send `rounds` of the mix (then wait for `settle`); the scrape's counters and histogram
    counts grow by exactly the requests sent. Returns the expected total."""
    before = scrape(metrics_port)
    expected = total(before, "c50k_http_requests_total") + send_mix(service.url, rounds)
    settle()
    text = wait_for_total(metrics_port, "c50k_http_requests_total", expected)
    assert total(text, "c50k_http_requests_total") == expected
    assert total(text, "c50k_http_request_duration_seconds_count") == expected
    return expected


@pytest.fixture(scope="module")
def four_workers(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[tuple[Service, int]]:
    port = free_port()
    running = start_service(
        tmp_path_factory.mktemp("observed"), upstream.template, metrics_env(port), workers=4
    )
    yield running, port
    assert running.process.stop() == 0, running.process.log_tail()


def test_counts_summed_over_four_workers_equal_the_requests_sent(
    four_workers: tuple[Service, int],
) -> None:
    service, port = four_workers
    expected = assert_counted_exactly(service, port, rounds=50)
    # Later flushes add nothing: no request is counted twice. (Proving that something does
    # not happen takes a window: three flush intervals of every worker.)
    time.sleep(3 * float(FLUSH))
    again = scrape(port)
    assert total(again, "c50k_http_requests_total") == expected
    by_status = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(again)
        for s in family.samples
        if s.name == "c50k_http_requests_total"
    }
    assert by_status[("unmatched", "404")] >= 50
    assert by_status[("/items/{item_id}", "422")] >= 50


def test_a_real_scrape_passes_promtool(four_workers: tuple[Service, int]) -> None:
    service, port = four_workers
    send_mix(service.url, 3)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/system-deps installs prometheus"
    text = scrape(port)
    for name in (
        "c50k_http_requests_total",
        "c50k_http_request_duration_seconds_bucket",
        "c50k_http_requests_in_flight",
        "c50k_http_requests_shed_total",
        "c50k_http_queue_seconds_bucket",
        "c50k_http_shedding",
        "c50k_upstream_requests_total",
        "c50k_cache_hits_total",
    ):
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), name
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_workers_restarted_by_max_requests_lose_and_double_nothing(
    tmp_path: Path, upstream: Upstream
) -> None:
    port = free_port()
    # With SO_REUSEPORT every worker has a listening socket of its own, and while the two
    # restart at once nothing listens (connection refused): the master's shared socket here.
    directory = tmp_path / "metrics"
    env = metrics_env(
        port,
        C50K_SERVER_MAX_REQUESTS="12",
        C50K_SERVER_REUSE_PORT="false",
        C50K_METRICS_MULTIPROC_DIR=str(directory),
    )
    service = start_service(tmp_path, upstream.template, env, workers=2)
    try:

        def a_worker_restarted() -> None:
            # 60 requests at 12 a worker: one worker at least served 30. uvicorn checks its
            # limit a few times a second, so wait until a stopped worker has been replaced.
            service.process.wait_until(
                lambda: service.process.log_path.read_text().count("Booting worker") > 2,
                SCRAPE_WAIT_SECONDS,
                "restarting a worker",
            )

        assert_counted_exactly(service, port, rounds=15, settle=a_worker_restarted)
        assert "Maximum request limit" in service.process.log_path.read_text()

        # child_exit marked the stopped worker dead: its live gauges are gone, its counters
        # stay (they hold the requests it answered).
        def pids(prefix: str) -> set[int]:
            return {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob(f"{prefix}_*.db")}

        # A replacement worker writes its live gauges at its first flush, a moment after it
        # booted; the stopped worker's were removed by child_exit.
        service.process.wait_until(
            lambda: bool(pids("gauge_livesum")), SCRAPE_WAIT_SECONDS, "publishing live gauges"
        )
        live = pids("gauge_livesum")
        assert all(Path(f"/proc/{pid}").exists() for pid in live)
        assert any(not Path(f"/proc/{pid}").exists() for pid in pids("counter"))
    finally:
        assert service.process.stop() == 0, service.process.log_tail()


def test_log_lines_are_json_and_carry_the_request_id_to_the_upstream(
    tmp_path: Path, upstream: Upstream
) -> None:
    env = metrics_env(free_port(), C50K_SERVER_ACCESS_LOG="true")
    service = start_service(tmp_path, upstream.template, env)
    try:
        with httpx.Client(base_url=service.url, timeout=10.0) as client:
            # An id no other test reads, so both sides come from the upstream.
            answer = client.get("/items/70001", headers={"X-Request-ID": "obs-test-70001"})
            assert answer.status_code == 200
            assert answer.headers["x-request-id"] == "obs-test-70001"
            seen = upstream_headers(upstream)
            assert seen["x-request-id"] == "obs-test-70001"

            made = client.get("/health").headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made)
            # Not sane (a space, or too long): replaced by a new id, never echoed or logged.
            for bad in ("two words", "x" * 200):
                replaced = client.get("/health", headers={"X-Request-ID": bad})
                assert replaced.headers["x-request-id"] not in (bad, made)
    finally:
        assert service.process.stop() == 0, service.process.log_tail()

    lines = [line for line in service.process.log_path.read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]  # Every line: one JSON object.
    access = [r for r in records if r.get("logger") == "c50k.access"]
    ours = [r for r in access if r.get("request_id") == "obs-test-70001"]
    assert len(ours) == 1, access
    assert ours[0]["route"] == "/items/{item_id}"
    assert ours[0]["status"] == 200
    assert {"timestamp", "level", "event"} <= ours[0].keys()
    assert all(r.get("request_id") for r in access)


def test_traces_cover_the_request_cache_store_and_upstream(
    tmp_path: Path, upstream: Upstream
) -> None:
    env = metrics_env(free_port(), OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="c50k-e2e")
    service = start_service(tmp_path, upstream.template, env, workers=1)
    try:
        answer = httpx.get(f"{service.url}/items/70101", timeout=10.0)
        assert answer.status_code == 200
        seen = upstream_headers(upstream)
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", seen["traceparent"])
    finally:
        # Stopping flushes the span processor into the log.
        assert service.process.stop() == 0, service.process.log_tail()
    log = service.process.log_path.read_text()
    trace_id = seen["traceparent"].split("-")[1]
    for name in ("cache.load", "store.get", "upstream.fetch"):
        assert f'"name": "{name}"' in log, name
    assert f'"trace_id": "0x{trace_id}"' in log
    assert '"kind": "SpanKind.SERVER"' in log
    assert '"service.name": "c50k-e2e"' in log


def test_profile_records_a_flame_graph_of_a_worker(service: Service, tmp_path: Path) -> None:
    output = tmp_path / "worker.svg"
    argv = [sys.executable, "-m", "c50k", "profile", "--pid", str(service.process.pid)]
    profiled = subprocess.run(
        # --idle: no load here, and a waiting worker leaves no samples otherwise.
        [*argv, "--seconds", "1", "--idle", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    worker = int(re.findall(r"worker (\d+)", profiled.stdout)[0])
    assert worker != service.process.pid  # A worker, not the master.
    assert output.read_text().lstrip().startswith("<?xml")
    assert "<svg" in output.read_text()
