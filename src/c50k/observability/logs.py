"""Structured logs: every line of gunicorn, uvicorn and c50k through structlog's formatter, as
one JSON object a line (`C50K_LOG_FORMAT=json`) or aligned text for a terminal (`console`),
each carrying the request id of the request it was written for.

c50k's code keeps logging through the standard library; structlog renders the records, so
third-party lines (gunicorn's, uvicorn's) come out in the same form.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import structlog
from gunicorn.glogging import Logger as GunicornBaseLogger
from structlog.typing import EventDict, Processor, WrappedLogger

from c50k.observability.requestid import request_id

LogFormat = Literal["json", "console"]


def add_request_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    rid = request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid.decode("ascii"))
    return event


SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    add_request_id,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(log_format: LogFormat) -> logging.Formatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        # Tracebacks become one string field instead of extra lines that are not JSON.
        processors.append(structlog.processors.format_exc_info)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS, processors=[*processors, renderer]
    )


def configure_structlog() -> None:
    """structlog's own loggers (the access log) hand their events to the stdlib handlers."""
    structlog.configure(
        processors=[*SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def use_format(handlers: list[logging.Handler], log_format: LogFormat) -> None:
    for handler in handlers:
        handler.setFormatter(formatter(log_format))


class JsonLogger(GunicornBaseLogger):  # type: ignore[misc]  # gunicorn ships no type hints.
    """gunicorn's logger (master and workers) with structlog's rendering."""

    log_format: LogFormat = "json"

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure_structlog()
        use_format(self.error_log.handlers + self.access_log.handlers, self.log_format)


class ConsoleLogger(JsonLogger):
    log_format: LogFormat = "console"


def logger_class(log_format: LogFormat) -> str:
    """The gunicorn `logger_class` setting for a format."""
    cls = JsonLogger if log_format == "json" else ConsoleLogger
    return f"{cls.__module__}.{cls.__qualname__}"
