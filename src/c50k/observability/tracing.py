"""OpenTelemetry tracing: off by default, on with the standard OTEL_* variables.

On when OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`) or an OTLP endpoint is set
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_SDK_DISABLED=true wins.
The SDK reads the rest itself: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER
and its argument, the exporter's endpoint, headers and timeout. OTLP goes over HTTP/protobuf.

FastAPI's native telemetry makes the request's server span (with the incoming traceparent as
its parent); c50k adds a span per cache load, store read and upstream call, and sends the
trace context upstream. When tracing is off none of these wrappers is installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from opentelemetry import propagate, trace

from c50k.types import ItemJson, Reads, Upstream

logger = logging.getLogger(__name__)

T = TypeVar("T")
TRACER_NAME = "c50k"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return exporters.strip().lower() not in ("", "none")
    return any(
        environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def start_tracing(environ: Mapping[str, str] = os.environ) -> Callable[[], None]:
    """Install the SDK's tracer provider in this worker; returns its shutdown (which exports
    what is still buffered)."""
    # Imported here: a worker with tracing off never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "c50k"}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            logger.warning("OTEL_TRACES_EXPORTER %r is not supported; use otlp or console", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def traced(name: str, call: Callable[[int], Awaitable[T]]) -> Callable[[int], Awaitable[T]]:
    """`call(item_id)` inside a span named `name`."""
    tracer = trace.get_tracer(TRACER_NAME)

    async def in_span(item_id: int) -> T:
        with tracer.start_as_current_span(name, attributes={"c50k.item_id": item_id}):
            return await call(item_id)

    return in_span


class TracedReads:
    """The item store's reads, each in a `store.get` span."""

    def __init__(self, reads: Reads) -> None:
        self._get = traced("store.get", reads.get)

    async def get(self, item_id: int) -> ItemJson | None:
        return await self._get(item_id)


class TracedUpstream:
    """The upstream's fetches, each in an `upstream.fetch` span."""

    def __init__(self, upstream: Upstream) -> None:
        self._fetch = traced("upstream.fetch", upstream.fetch)

    async def fetch(self, item_id: int) -> ItemJson:
        return await self._fetch(item_id)


def trace_headers() -> dict[str, str]:
    """The current trace context as headers (traceparent, tracestate) for an outgoing call."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
