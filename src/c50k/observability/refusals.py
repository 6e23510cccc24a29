"""Counting the 503s a worker at its connection cap sends.

uvicorn answers them itself, before the app is called: its HTTP protocols swap in
`service_unavailable` when `limit_concurrency` is reached, so no middleware sees them. The
worker replaces that function in the two protocol modules with one that counts first.
"""

from __future__ import annotations

from typing import Any


class Refusals:
    count = 0


def count_refusals() -> None:
    from uvicorn.protocols.http import flow_control, h11_impl, httptools_impl  # noqa: PLC0415

    original = flow_control.service_unavailable

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        Refusals.count += 1
        await original(scope, receive, send)

    # Each module imported the name for itself; both copies are replaced.
    httptools_impl.service_unavailable = counted  # type: ignore[attr-defined]  # not re-exported
    h11_impl.service_unavailable = counted  # type: ignore[attr-defined]  # not re-exported
