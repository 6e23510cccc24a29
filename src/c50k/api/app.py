"""The composition root: `create_app(settings)` builds the app; its lifespan opens every pool
and client on start and closes them in reverse order. Nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from c50k import __version__
from c50k.api.admission import AdmissionControl
from c50k.api.errors import install_error_handlers
from c50k.api.fastpath import ItemsFastPath
from c50k.api.lifecycle import Lifecycle
from c50k.api.middleware import CloseWhileDraining
from c50k.api.responses import JsonResponse
from c50k.api.routes import router
from c50k.api.services import Services
from c50k.api.shedding import Admission, QueuePolicy
from c50k.cache.memory import MemoryCache
from c50k.cache.readthrough import Freshness, LocalTtl, ReadThroughCache
from c50k.cache.shared import RedisLayer
from c50k.cache.stats import CacheStats
from c50k.items.service import ItemService
from c50k.items.sources import SourceChain
from c50k.observability.instrumentation import RecordAnswers, RequestObserver
from c50k.observability.metrics import Metrics
from c50k.observability.requestid import RequestIds
from c50k.observability.tracing import (
    TracedReads,
    TracedUpstream,
    start_tracing,
    trace_headers,
    traced,
    tracing_requested,
)
from c50k.settings import Settings
from c50k.store.base import ItemStore
from c50k.store.factory import open_store
from c50k.types import ItemJson, Reads, ReplicatedStore, Upstream
from c50k.upstream.client import UpstreamClient

logger = logging.getLogger(__name__)

# How often a worker compares its resident memory with its limit.
MEMORY_CHECK_SECONDS = 0.5


async def open_services(
    settings: Settings,
    lifecycle: Lifecycle,
    stack: AsyncExitStack,
    store: ItemStore | None = None,
    *,
    metrics: Metrics | None = None,
    tracing: bool = False,
) -> Services:
    """Open every tier; `stack` closes them in reverse order. A given `store` is used as is
    (embedding, tests) and stays open: its owner closes it."""
    if store is None:
        store = await open_store(settings)
        stack.push_async_callback(store.close)
    if metrics is not None and isinstance(store, ReplicatedStore):
        metrics.watch_replicated_store(store)

    upstream: UpstreamClient | None = None
    if settings.upstream.url is not None:
        upstream = UpstreamClient(
            settings.upstream,
            metrics=metrics.upstream if metrics is not None else None,
            trace_headers=trace_headers if tracing else None,
        )
        await upstream.open()
        stack.push_async_callback(upstream.close)

    reads: Reads = store
    fetches: Upstream | None = upstream
    if tracing:
        reads = TracedReads(store)
        fetches = TracedUpstream(upstream) if upstream is not None else None
    sources = SourceChain(reads, fetches)
    cache: ReadThroughCache | None = None
    if settings.cache.enabled:
        load = traced("cache.load", sources.load) if tracing else sources.load
        cache = open_cache(settings, load)
        stack.push_async_callback(cache.close)
        if metrics is not None:
            metrics.watch_cache_stats(
                cache.stats, cache.redis.breaker if cache.redis is not None else None
            )
        if cache.redis is not None and not await cache.redis.warm():
            logger.warning(
                "redis at %s does not answer; reads go to the sources until it does",
                settings.redis.url,
            )
    items = ItemService(store, sources, cache, settings.request.deadline_seconds)
    return Services(settings, lifecycle, store, upstream, cache, items)


def open_cache(
    settings: Settings,
    load: Callable[[int], Awaitable[ItemJson]],
    *,
    timer: Callable[[], float] = time.monotonic,
) -> ReadThroughCache:
    """The in-process layer alone, or (with C50K_REDIS_URL) Redis behind one. `timer` ages
    the in-process entries (tests move it by hand)."""
    cache, redis_settings = settings.cache, settings.redis
    if redis_settings.url is None:
        freshness = Freshness(
            ttl=cache.ttl_seconds,
            negative_ttl=cache.negative_ttl_seconds,
            stale_while_revalidate=cache.stale_while_revalidate_seconds,
            stale_if_error=cache.stale_if_error_seconds,
        )
        memory = MemoryCache(
            cache.max_items,
            cache.ttl_seconds,
            cache.negative_ttl_seconds,
            timer=timer,
            stale_seconds=freshness.stale_seconds,
            refresh_ahead=cache.refresh_ahead,
        )
        return ReadThroughCache(memory, load, freshness=freshness)
    # In front of Redis, in-process entries live as long as in Redis while this worker hears
    # every invalidation, and local_ttl_seconds while it may miss some (docs/cache.md).
    short = redis_settings.local_ttl_seconds
    local_ttl = LocalTtl(
        heard=(cache.ttl_seconds, cache.negative_ttl_seconds),
        unheard=(min(cache.ttl_seconds, short), min(cache.negative_ttl_seconds, short)),
    )
    front: MemoryCache | None = (
        MemoryCache(
            cache.max_items, *local_ttl.unheard, timer=timer, jitter=redis_settings.ttl_jitter
        )
        if redis_settings.local
        else None
    )
    freshness = Freshness(
        ttl=cache.ttl_seconds,
        negative_ttl=cache.negative_ttl_seconds,
        stale_while_revalidate=cache.stale_while_revalidate_seconds,
        stale_if_error=cache.stale_if_error_seconds,
        jitter=redis_settings.ttl_jitter,
    )
    stats = CacheStats()
    redis = RedisLayer(redis_settings, stats)
    return ReadThroughCache(
        front, load, redis=redis, freshness=freshness, local_ttl=local_ttl, stats=stats
    )


def create_app(
    settings: Settings,
    lifecycle: Lifecycle | None = None,
    *,
    store: ItemStore | None = None,
) -> FastAPI:
    lifecycle = lifecycle if lifecycle is not None else Lifecycle()
    metrics = Metrics() if settings.metrics.enabled else None
    server = settings.server
    admission = Admission(
        QueuePolicy(
            max_queue_seconds=server.max_queue_seconds,
            target_seconds=server.queue_target_seconds,
            interval_seconds=server.queue_interval_seconds,
        ),
        max_in_flight=server.max_in_flight,
    )
    # FastAPI's native OpenTelemetry looked up the tracer provider, and with it os.environ, on
    # every request (2.5% of a fan-out worker's CPU): on only when OTEL_* variables ask for it.
    tracing = tracing_requested()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if tracing:
                stack.callback(start_tracing())
            if metrics is not None:
                await stack.enter_async_context(_publishing(metrics, settings))
            await stack.enter_async_context(
                admission.watching_memory(server.memory_limit_bytes(), MEMORY_CHECK_SECONDS)
            )
            app.state.services = await open_services(
                settings, lifecycle, stack, store, metrics=metrics, tracing=tracing
            )
            logger.info(
                "serving: store=%s cache=%s redis=%s upstream=%s",
                settings.store.backend,
                "on" if settings.cache.enabled else "off",
                settings.redis.url or "none",
                settings.upstream.url or "none",
            )
            yield

    app = C50kApp(
        admission=admission,
        lifecycle=lifecycle,
        observability=Observability(
            metrics=metrics,
            request_ids=RequestIds() if settings.log.request_id else None,
            access_log=settings.server.access_log,
        ),
        # Prometheus carries the metrics, structlog the logs; OpenTelemetry the traces only.
        telemetry={"tracing": tracing, "metrics": False, "logs": False},
        title="c50k",
        version=__version__,
        summary="An aggregation API built to hold 50,000+ concurrent requests.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.lifecycle = lifecycle
    app.state.admission = admission  # The worker's protocol refuses at the door with it.
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(CloseWhileDraining, lifecycle=lifecycle)
    return app


@asynccontextmanager
async def _publishing(metrics: Metrics, settings: Settings) -> AsyncIterator[None]:
    """Publish the worker's metrics every interval, and once more when it stops: a worker
    restarted by max_requests or SIGHUP loses no count."""
    publisher = asyncio.ensure_future(
        metrics.publish_every(settings.metrics.flush_interval_seconds)
    )
    try:
        yield
    finally:
        publisher.cancel()
        metrics.flush()


@dataclass(frozen=True, slots=True)
class Observability:
    metrics: Metrics | None
    request_ids: RequestIds | None
    access_log: bool

    @property
    def per_request(self) -> bool:
        return self.metrics is not None or self.request_ids is not None or self.access_log


class C50kApp(FastAPI):
    """FastAPI with admission control and the hot route's fast path outside its middleware,
    and the request's metrics, id and access log around both.

    Starlette wraps user middleware inside its error and exception middlewares (and FastAPI
    adds its own); a shed request or a cached GET /items/{id} needs none of them, and at
    overload every microsecond a shed request costs comes out of the admitted ones.
    """

    def __init__(
        self,
        *,
        admission: Admission,
        lifecycle: Lifecycle,
        observability: Observability,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._admission = admission
        self._lifecycle = lifecycle
        self._observability = observability

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        seen = self._observability
        observer = None
        if seen.per_request:
            inner = RecordAnswers(inner)
            observer = RequestObserver(
                metrics=seen.metrics, request_ids=seen.request_ids, access_log=seen.access_log
            )
        fast = ItemsFastPath(inner, state=self.state, lifecycle=self._lifecycle)
        if seen.metrics is not None:
            seen.metrics.watch_admission(self._admission)
        return AdmissionControl(fast, self._admission, observer)
