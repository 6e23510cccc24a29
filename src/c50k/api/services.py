"""What a worker holds while it serves, built once by the lifespan, and the typed dependencies
that hand it to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from c50k.cache.readthrough import ReadThroughCache
from c50k.items.service import ItemService
from c50k.runtime.lifecycle import Lifecycle
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


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_items(request: Request) -> ItemService:
    return get_services(request).items


AppServices = Annotated[Services, Depends(get_services)]
Items = Annotated[ItemService, Depends(get_items)]
