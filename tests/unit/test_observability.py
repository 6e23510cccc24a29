"""Metrics counted in memory publish exactly what prometheus_client would have counted; the
request id, the instrumentation wrapper, the dashboard and the scrape config, without I/O
(but for promtool, run on a file)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from c50k.api.admission import AdmissionControl
from c50k.api.shedding import Admission, QueuePolicy
from c50k.cache.breaker import CircuitBreaker
from c50k.cache.stats import CacheStats
from c50k.inventory import parse_instances
from c50k.observability.dashboard import dashboard, metric_names, render
from c50k.observability.instrumentation import (
    ROUTE_KEY,
    RecordAnswers,
    RequestObserver,
    answering,
    route_of,
)
from c50k.observability.logs import formatter
from c50k.observability.metrics import (
    LATENCY_BUCKETS,
    UNMATCHED_ROUTE,
    BreakerState,
    Metrics,
    PendingHistogram,
)
from c50k.observability.multiprocess import ENV, MetricsHooks
from c50k.observability.requestid import RequestIds, request_id, sane_request_id
from c50k.observability.tracing import tracing_requested
from c50k.settings import MetricsSettings
from c50k.types import PoolStats
from tests.unit.fakes import Clock

ROOT = Path(__file__).resolve().parents[2]
VALUES = [0.0, 0.0001, 0.00025, 0.0003, 0.001, 0.004, 0.02, 0.7, 3.0, 10.0, 42.0]


def test_pending_histogram_publishes_what_observe_would() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", ["x"], buckets=LATENCY_BUCKETS, registry=registry)
    pending_target = Histogram(
        "pending_seconds", "p", ["x"], buckets=LATENCY_BUCKETS, registry=registry
    )
    pending = PendingHistogram(pending_target)
    for value in VALUES:
        direct.labels("a").observe(value)
        pending.observe(("a",), value)
    assert registry.get_sample_value("pending_seconds_count", {"x": "a"}) is None
    pending.flush()
    pending.flush()  # Nothing new: nothing added.
    for bound in [*LATENCY_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else str(bound)
        assert registry.get_sample_value(
            "pending_seconds_bucket", {"x": "a", "le": le}
        ) == registry.get_sample_value("direct_seconds_bucket", {"x": "a", "le": le}), le
    assert registry.get_sample_value("pending_seconds_count", {"x": "a"}) == len(VALUES)
    assert registry.get_sample_value("pending_seconds_sum", {"x": "a"}) == pytest.approx(
        sum(VALUES)
    )


def test_requests_count_and_time_together() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for _ in range(3):
        metrics.requests.observe(("GET", "/health", "200"), 0.0004)
    metrics.requests.observe(("GET", "/health", "503"), 0.002)
    metrics.flush()
    labels = {"method": "GET", "route": "/health"}
    assert registry.get_sample_value("c50k_http_requests_total", labels | {"status": "200"}) == 3
    assert registry.get_sample_value("c50k_http_requests_total", labels | {"status": "503"}) == 1
    count = registry.get_sample_value(
        "c50k_http_request_duration_seconds_count", labels | {"status": "200"}
    )
    assert count == 3


class Pools:
    def pool_stats(self) -> Iterable[PoolStats]:
        return [PoolStats("0", "primary", 10, 4, 1), PoolStats("0", "replica", 10, 2, 0)]


def test_the_other_tiers_interface() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stats = CacheStats(redis_hits=5, redis_misses=2, loads=1)
    breaker = CircuitBreaker(failures=1, open_seconds=60)
    breaker.failure()
    metrics.watch_cache_stats(stats, breaker)
    metrics.register_pools(Pools())
    metrics.observe_pool_wait("0", "primary", 0.003)
    metrics.set_replication_lag("0", "replica-1", 0.25)
    metrics.set_breaker_state("redis", BreakerState.OPEN)

    def broken() -> None:
        raise RuntimeError("a sampler with a bug")

    metrics.add_sampler(broken)
    metrics.flush()
    stats.redis_hits += 3  # Cumulative: the next flush adds the growth only.
    metrics.flush()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("c50k_cache_hits_total", level="redis") == 8
    assert value("c50k_cache_misses_total", level="redis") == 2
    assert value("c50k_cache_loads_total", level="redis") == 1
    assert value("c50k_store_pool_checked_out", shard="0", role="primary") == 4
    assert value("c50k_store_pool_overflow", shard="0", role="primary") == 1
    assert value("c50k_store_pool_size", shard="0", role="replica") == 10
    assert value("c50k_store_pool_wait_seconds_count", shard="0", role="primary") == 1
    assert value("c50k_store_replication_lag_seconds", shard="0", replica="replica-1") == 0.25
    assert value("c50k_circuit_breaker_state", breaker="redis") == 2


def exported_sample_names(registry: CollectorRegistry) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {
        family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]
    }


def test_the_dashboard_queries_only_exported_metrics_and_is_current() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert metric_names(dashboard()) <= exported_sample_names(registry)
    path = ROOT / "docs" / "grafana" / "c50k-dashboard.json"
    assert path.read_text() == render(), (
        "python -m c50k.observability.dashboard > docs/grafana/c50k-dashboard.json"
    )


def test_request_ids() -> None:
    ids = RequestIds()
    made = {ids.new() for _ in range(1000)}
    assert len(made) == 1000
    assert all(sane_request_id(i) for i in made)
    assert ids.of([(b"x-request-id", b"abc-123")]) == b"abc-123"
    for bad in (b"", b"a b", b"x" * 129, b'"quoted"', "é".encode()):
        assert not sane_request_id(bad)
        assert ids.of([(b"x-request-id", bad)]) != bad
    assert ids.of([(b"accept", b"*/*")]) not in made


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "c50k"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_ask(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on


CONSTANT_HEADERS = [(b"content-type", b"application/json")]


def app_answering(status: int, route: str | None, *, through_fastapi: bool) -> ASGIApp:
    """An app that answers like the fast path (answering() itself) or like FastAPI (a plain
    send, with a module-level header list, under RecordAnswers)."""

    async def inner(scope: Scope, _receive: Receive, send: Send) -> None:
        if route is not None:
            scope[ROUTE_KEY] = route
        assert request_id.get() is not None
        headers = CONSTANT_HEADERS
        if not through_fastapi:
            headers = list(CONSTANT_HEADERS)
            answering(scope, status, headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return RecordAnswers(inner) if through_fastapi else inner


async def test_instrumentation_counts_labels_and_returns_the_request_id() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    cases = [(503, "/items/{item_id}", "GET", False), (404, None, "BREW", True)]
    for status, route, method, through_fastapi in cases:
        inner = app_answering(status, route, through_fastapi=through_fastapi)
        observer = RequestObserver(metrics=metrics, request_ids=RequestIds(), access_log=True)
        wrapped = AdmissionControl(inner, Admission(QueuePolicy()), observer=observer)
        scope = {"type": "http", "method": method, "path": "/x", "headers": []}
        await wrapped(scope, receive, send)
    metrics.flush()
    assert CONSTANT_HEADERS == [(b"content-type", b"application/json")]  # Untouched.
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 2
    assert all(dict(m["headers"])[b"x-request-id"] for m in starts)
    get = {"method": "GET", "route": "/items/{item_id}", "status": "503"}
    other = {"method": "other", "route": UNMATCHED_ROUTE, "status": "404"}
    assert registry.get_sample_value("c50k_http_requests_total", get) == 1
    assert registry.get_sample_value("c50k_http_requests_total", other) == 1


async def test_a_request_that_fails_before_answering_counts_as_500() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    async def failing(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise RuntimeError("a bug")

    async def unused() -> Message:
        raise AssertionError

    async def ignore(_message: Message) -> None:
        raise AssertionError

    observer = RequestObserver(metrics=metrics, request_ids=None, access_log=False)
    wrapped = AdmissionControl(failing, Admission(QueuePolicy()), observer=observer)
    with pytest.raises(RuntimeError):
        await wrapped({"type": "http", "method": "GET", "path": "/", "headers": []}, unused, ignore)
    metrics.flush()
    labels = {"method": "GET", "route": UNMATCHED_ROUTE, "status": "500"}
    assert registry.get_sample_value("c50k_http_requests_total", labels) == 1


def test_route_of_prefers_the_template() -> None:
    class Route:
        path = "/items/{item_id}"

    assert route_of({"route": Route()}) == "/items/{item_id}"
    assert route_of({ROUTE_KEY: "/fast"}) == "/fast"
    assert route_of({}) == UNMATCHED_ROUTE


@pytest.mark.parametrize(
    "text", ["", "host", "host:", "host:0", "host:70000", "a b:1", "h:1,h:1", "[nope]:1", "h:1@5"]
)
def test_bad_instances_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"instance|instances"):
        parse_instances(text, weighted=False)


def test_a_configured_metrics_directory_loses_only_the_last_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old counts")
    (directory / "README").write_text("not ours")
    hooks = MetricsHooks(MetricsSettings(multiproc_dir=directory))
    hooks.on_starting(None)
    assert os.environ[ENV] == str(directory.resolve())
    assert sorted(p.name for p in directory.iterdir()) == ["README"]
    hooks.on_exit(None)  # No exporter started; a configured directory stays.
    assert directory.exists()


def test_a_temporary_metrics_directory_is_removed_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    hooks = MetricsHooks(MetricsSettings())
    hooks.on_starting(None)
    assert hooks.directory is not None
    assert os.environ[ENV] == str(hooks.directory)
    hooks.on_exit(None)
    assert not hooks.directory.exists()


def test_json_log_lines_carry_the_request_id_and_keep_tracebacks_on_one_line() -> None:
    record = logging.LogRecord("c50k.test", logging.ERROR, __file__, 1, "failed %d", (7,), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    token = request_id.set(b"req-7")
    try:
        line = formatter("json").format(record)
    finally:
        request_id.reset(token)
    assert "\n" not in line
    event = json.loads(line)
    assert event["event"] == "failed 7"
    assert event["request_id"] == "req-7"
    assert event["level"] == "error"
    assert "ValueError: boom" in event["exception"]


async def test_shed_requests_are_counted_with_their_route_and_the_shed_counter() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    release = asyncio.Event()

    async def slow(scope: Scope, _receive: Receive, send: Send) -> None:
        scope[ROUTE_KEY] = "/items/{item_id}"
        await release.wait()
        headers: list[tuple[bytes, bytes]] = []
        answering(scope, 200, headers)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    observer = RequestObserver(metrics=metrics, request_ids=RequestIds(), access_log=False)
    clock = Clock()
    rule = Admission(QueuePolicy(max_queue_seconds=10.0), max_in_flight=1, clock=clock)
    metrics.watch_admission(rule)
    admission = AdmissionControl(slow, rule, observer=observer)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    def scope() -> Scope:
        return {"type": "http", "method": "GET", "path": "/items/1", "headers": []}

    held = asyncio.ensure_future(admission(scope(), receive, send))
    await asyncio.sleep(0)  # The first request is in flight now.
    await admission(scope(), receive, send)  # Over the count limit: shed.
    late = scope()
    rule.at_door(late)
    clock.now += 12.0
    await admission(late, receive, send)  # Waited past the maximum: shed.
    release.set()
    await held
    metrics.flush()
    labels = {"method": "GET", "route": UNMATCHED_ROUTE}
    assert registry.get_sample_value("c50k_http_requests_total", labels | {"status": "503"}) == 2
    routed = {"method": "GET", "route": "/items/{item_id}", "status": "200"}
    assert registry.get_sample_value("c50k_http_requests_total", routed) == 1
    for reason in ("in_flight", "queue"):
        assert registry.get_sample_value("c50k_http_requests_shed_total", {"reason": reason}) == 1
    # The late request's wait is in the queueing-delay histogram.
    assert registry.get_sample_value("c50k_http_queue_seconds_count", {}) == 1
    assert registry.get_sample_value("c50k_http_queue_seconds_sum", {}) == 12.0
    assert all(b"x-request-id" in dict(m["headers"]) for m in sent if "headers" in m)
