"""`c50k serve`: gunicorn's master process managing C50kWorker processes, from settings."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from c50k.observability.logs import logger_class
from c50k.observability.multiprocess import MetricsHooks
from c50k.settings import Settings

WORKER_CLASS = "c50k.runtime.worker.C50kWorker"

logger = logging.getLogger(__name__)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return gunicorn_settings(settings) | gunicorn_hooks(settings)


def gunicorn_hooks(settings: Settings) -> dict[str, Any]:
    """The server hooks (code, not values): the metrics' multiprocess directory, dead workers."""
    if not settings.metrics.enabled:
        return {}
    return MetricsHooks(settings.metrics, settings.log.format).options()


def gunicorn_settings(settings: Settings) -> dict[str, Any]:
    """The plain values of gunicorn's settings (what `c50k render gunicorn` writes out)."""
    server = settings.server
    return {
        "bind": server.binds,
        "workers": server.workers,
        "worker_class": WORKER_CLASS,
        # Becomes uvicorn's limit_concurrency in C50kWorker.
        "worker_connections": server.connection_budget(settings.upstream.max_connections),
        "backlog": server.backlog,
        "keepalive": server.keepalive_seconds,  # gunicorn takes whole seconds.
        "timeout": server.worker_timeout_seconds,
        # gunicorn kills a worker this long after SIGTERM.
        "graceful_timeout": server.worker_stop_seconds,
        "max_requests": server.max_requests,
        "max_requests_jitter": server.max_requests_jitter,
        "reuse_port": server.reuse_port,
        # C50K_SERVER_ACCESS_LOG is c50k's own access line (with the request id), not gunicorn's.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log.level,
        "logger_class": logger_class(settings.log.format),
        "forwarded_allow_ips": server.forwarded_allow_ips,
        "proc_name": "c50k",
        # gunicorn 24+ opens a control socket in $HOME; several instances would share one path.
        "control_socket_disable": True,
    }


class C50kApplication(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints.
    """gunicorn embedded: this process is the master, so signals reach it by its own PID."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__(prog="c50k serve")

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: every worker opens its own pools.
        from c50k.api.app import create_app  # noqa: PLC0415 -- not needed by the master.

        return create_app(self.settings)


def serve(settings: Settings) -> None:
    if settings.store.backend == "sqlite":
        settings.store.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    C50kApplication(settings).run()
