"""What a worker holds while it serves, built once by the lifespan, and the typed dependencies
that hand it to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from c50k.api.lifecycle import Lifecycle
from c50k.cache.readthrough import ReadThroughCache
from c50k.items.service import ItemService
from c50k.settings import Settings
from c50k.store.base import ItemStore
from c50k.upstream.client import UpstreamClient


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    lifecycle: Lifecycle
    store: ItemStore
    upstream: UpstreamClient | None
    cache: ReadThroughCache | None
    items: ItemService


# async on purpose: FastAPI runs a plain `def` dependency in a worker thread, and that thread
# hop cost about a third of the CPU of a cached GET /items/{id} (py-spy, BENCHMARKS.md).
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_items(request: Request) -> ItemService:
    services: Services = request.app.state.services
    return services.items


AppServices = Annotated[Services, Depends(get_services)]
Items = Annotated[ItemService, Depends(get_items)]
