"""The one place where errors become HTTP statuses. Every answer is JSON; none has a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

from c50k.api.responses import JsonResponse
from c50k.exceptions import BadRequest, StoreError, StoreUnavailable, UpstreamError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


async def _bad_request(_request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, BadRequest)  # noqa: S101 -- registered for this type only.
    return JsonResponse({"detail": exc.message}, status_code=exc.status)


async def _unavailable(_request: Request, exc: Exception) -> JsonResponse:
    logger.warning("dependency unavailable: %s", exc)
    return JsonResponse(
        {"detail": "Service temporarily unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _internal(_request: Request, exc: Exception) -> JsonResponse:
    # Starlette re-raises only what reaches its outermost handler (`Exception`) for the server
    # to log; a StoreError answered here would otherwise leave no trace.
    if isinstance(exc, StoreError):
        logger.error("store failed: %s", exc, exc_info=exc)
    return JsonResponse({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BadRequest, _bad_request)
    # A store that is down or busy, or an upstream failing a direct call: retry later.
    app.add_exception_handler(StoreUnavailable, _unavailable)
    app.add_exception_handler(UpstreamError, _unavailable)
    app.add_exception_handler(StoreError, _internal)
    app.add_exception_handler(Exception, _internal)
