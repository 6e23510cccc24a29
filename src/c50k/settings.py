"""Typed settings: the one source of truth for every tier and every rendered file.

Environment variables use the `C50K_` prefix and one underscore between the group and the
field, so `C50K_UPSTREAM_URL` sets `upstream.url` and `C50K_SERVER_WORKERS` sets
`server.workers`. docs/configuration.md lists every variable.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Files a worker keeps for itself beyond client connections: listening socket, logs, the
# store's files, the event loop's own descriptors, and connections that are being refused.
RESERVED_FILES_PER_WORKER = 256

# Largest item id: ids are signed 64-bit integers in every store.
MAX_ITEM_ID = 2**63 - 1


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # One asyncio worker per core: the event loop is the unit of parallelism (see BENCHMARKS.md).
    workers: int = Field(default_factory=_cpu_count, ge=1)
    # The kernel caps this at net.core.somaxconn.
    backlog: int = Field(default=4096, ge=64)
    # Longer than any proxy's idle timeout (nginx 60 s, HAProxy's rendered 30 s), so a proxy
    # never reuses a socket the app has just closed.
    keepalive_seconds: int = Field(default=75, ge=1)
    # gunicorn kills a worker whose heartbeat is older than this. 30 s killed workers in a
    # 50,000-connection storm on 2 cores (FINDINGS.md); 300 s did not.
    worker_timeout_seconds: int = Field(default=300, ge=10)
    # After SIGTERM, /ready answers 503 this long before the worker stops accepting, so a load
    # balancer that checks every second with fall 2 takes the node out first.
    drain_seconds: float = Field(default=3.0, ge=0)
    # Time for in-flight requests to finish once the worker stops accepting.
    graceful_timeout_seconds: float = Field(default=30.0, gt=0)
    max_requests: int = Field(default=0, ge=0)
    max_requests_jitter: int = Field(default=0, ge=0)
    reuse_port: bool = True
    access_log: bool = False
    # Connections one worker holds before answering 503; None derives it from RLIMIT_NOFILE.
    max_connections_per_worker: int | None = Field(default=None, ge=1)
    # Addresses whose X-Forwarded-For is believed. Never "*": a client could spoof its address.
    forwarded_allow_ips: str = "127.0.0.1"

    def connection_budget(self, upstream_connections: int) -> int:
        """Connections a worker accepts before it answers 503 instead of running out of files."""
        if self.max_connections_per_worker is not None:
            return self.max_connections_per_worker
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1_048_576
        return max(1, soft - upstream_connections - RESERVED_FILES_PER_WORKER)


class UpstreamSettings(BaseModel):
    # A template such as http://127.0.0.1:9000/posts/{id}; None serves from the store only.
    url: str | None = None
    timeout_seconds: float = Field(default=2.0, gt=0)
    connect_timeout_seconds: float = Field(default=1.0, gt=0)
    # Keep-alive connections per worker; requests beyond it wait inside timeout_seconds.
    max_connections: int = Field(default=256, ge=1)
    keepalive_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1)

    @field_validator("url")
    @classmethod
    def _template_has_one_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream url must start with http:// or https://")
        if value.count("{id}") != 1 or value.count("{") != 1:
            raise ValueError("upstream url must contain the placeholder {id} exactly once")
        return value


class StoreSettings(BaseModel):
    # "memory" keeps items in the worker's memory only: for tests and benchmarks, not durable.
    backend: Literal["sqlite", "memory"] = "sqlite"
    sqlite_path: Path = Path("var/c50k.sqlite3")
    sqlite_busy_timeout_seconds: float = Field(default=5.0, gt=0)


class CacheSettings(BaseModel):
    # Off: every read reaches the store and the upstream (the fan-out benchmark needs this).
    enabled: bool = True
    ttl_seconds: float = Field(default=10.0, gt=0)
    negative_ttl_seconds: float = Field(default=2.0, ge=0)
    max_items: int = Field(default=100_000, ge=1)


class RequestSettings(BaseModel):
    # Total time one GET /items/{id} may spend on both sides together.
    deadline_seconds: float = Field(default=3.0, gt=0)
    max_body_bytes: int = Field(default=65_536, ge=1)
    page_limit_max: int = Field(default=1000, ge=1)


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="C50K_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    store: StoreSettings = StoreSettings()
    cache: CacheSettings = CacheSettings()
    request: RequestSettings = RequestSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _deadline_covers_one_call(self) -> Settings:
        if self.request.deadline_seconds < self.upstream.timeout_seconds:
            raise ValueError(
                f"request deadline ({self.request.deadline_seconds} s) is shorter than one "
                f"upstream call's timeout ({self.upstream.timeout_seconds} s)"
            )
        return self
