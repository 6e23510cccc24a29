"""The composition root: `create_app(settings)` builds the app; its lifespan opens every pool
and client on start and closes them in reverse order. Nothing connects at import."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from c50k import __version__
from c50k.api.admission import AdmissionControl
from c50k.api.errors import install_error_handlers
from c50k.api.fastpath import ItemsFastPath
from c50k.api.middleware import CloseWhileDraining
from c50k.api.responses import JsonResponse
from c50k.api.routes import router
from c50k.api.services import Services
from c50k.cache.memory import MemoryCache
from c50k.cache.readthrough import Freshness, LocalTtl, ReadThroughCache
from c50k.cache.shared import RedisLayer
from c50k.cache.stats import CacheStats
from c50k.items.service import ItemService
from c50k.items.sources import SourceChain
from c50k.runtime.lifecycle import Lifecycle
from c50k.settings import Settings
from c50k.store.base import ItemJson, ItemStore
from c50k.store.factory import open_store
from c50k.upstream.client import UpstreamClient

logger = logging.getLogger(__name__)


async def open_services(
    settings: Settings,
    lifecycle: Lifecycle,
    stack: AsyncExitStack,
    store: ItemStore | None = None,
) -> Services:
    """Open every tier; `stack` closes them in reverse order. A given `store` is used as is
    (embedding, tests) and stays open: its owner closes it."""
    if store is None:
        store = await open_store(settings.store)
        stack.push_async_callback(store.close)

    upstream: UpstreamClient | None = None
    if settings.upstream.url is not None:
        upstream = UpstreamClient(settings.upstream)
        await upstream.open()
        stack.push_async_callback(upstream.close)

    sources = SourceChain(store, upstream)
    cache: ReadThroughCache | None = None
    if settings.cache.enabled:
        cache = open_cache(settings, sources.load)
        stack.push_async_callback(cache.close)
        if cache.redis is not None and not await cache.redis.warm():
            logger.warning(
                "redis at %s does not answer; reads go to the sources until it does",
                settings.redis.url,
            )
    items = ItemService(store, sources, cache, settings.request.deadline_seconds)
    return Services(settings, lifecycle, store, upstream, cache, items)


def open_cache(settings: Settings, load: Callable[[int], Awaitable[ItemJson]]) -> ReadThroughCache:
    """The in-process layer alone, or (with C50K_REDIS_URL) Redis behind one."""
    cache, redis_settings = settings.cache, settings.redis
    if redis_settings.url is None:
        memory = MemoryCache(cache.max_items, cache.ttl_seconds, cache.negative_ttl_seconds)
        return ReadThroughCache(memory, load)
    # In front of Redis, in-process entries live as long as in Redis while this worker hears
    # every invalidation, and local_ttl_seconds while it may miss some (docs/cache.md).
    short = redis_settings.local_ttl_seconds
    local_ttl = LocalTtl(
        heard=(cache.ttl_seconds, cache.negative_ttl_seconds),
        unheard=(min(cache.ttl_seconds, short), min(cache.negative_ttl_seconds, short)),
    )
    front: MemoryCache | None = (
        MemoryCache(cache.max_items, *local_ttl.unheard, jitter=redis_settings.ttl_jitter)
        if redis_settings.local
        else None
    )
    freshness = Freshness(
        ttl=cache.ttl_seconds,
        negative_ttl=cache.negative_ttl_seconds,
        stale_while_revalidate=redis_settings.stale_while_revalidate_seconds,
        stale_if_error=redis_settings.stale_if_error_seconds,
        jitter=redis_settings.ttl_jitter,
    )
    stats = CacheStats()
    redis = RedisLayer(redis_settings, stats)
    return ReadThroughCache(
        front, load, redis=redis, freshness=freshness, local_ttl=local_ttl, stats=stats
    )


def create_app(
    settings: Settings | None = None,
    lifecycle: Lifecycle | None = None,
    *,
    store: ItemStore | None = None,
) -> FastAPI:
    settings = settings if settings is not None else Settings()
    lifecycle = lifecycle if lifecycle is not None else Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.services = await open_services(settings, lifecycle, stack, store)
            logger.info(
                "serving: store=%s cache=%s redis=%s upstream=%s",
                settings.store.backend,
                "on" if settings.cache.enabled else "off",
                settings.redis.url or "none",
                settings.upstream.url or "none",
            )
            yield

    # FastAPI's native OpenTelemetry looked up the tracer provider, and with it os.environ, on
    # every request (2.5% of a fan-out worker's CPU): on only when OTEL_* variables ask for it.
    otel = any(name.startswith("OTEL_") for name in os.environ)
    app = C50kApp(
        max_in_flight=settings.server.max_in_flight,
        lifecycle=lifecycle,
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
        title="c50k",
        version=__version__,
        summary="An aggregation API built to hold 50,000+ concurrent requests.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.lifecycle = lifecycle
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(CloseWhileDraining, lifecycle=lifecycle)
    return app


class C50kApp(FastAPI):
    """FastAPI with admission control and the hot route's fast path outside its middleware.

    Starlette wraps user middleware inside its error and exception middlewares (and FastAPI
    adds its own); a shed request or a cached GET /items/{id} needs none of them, and at
    overload every microsecond a shed request costs comes out of the admitted ones.
    """

    def __init__(self, *, max_in_flight: int, lifecycle: Lifecycle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_in_flight = max_in_flight
        self._lifecycle = lifecycle

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        fast = ItemsFastPath(inner, state=self.state, lifecycle=self._lifecycle)
        return AdmissionControl(fast, max_in_flight=self._max_in_flight)
