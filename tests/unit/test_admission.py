from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from c50k.api.admission import AdmissionControl


class SlowApp:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http(path: str) -> Scope:
    return {"type": "http", "method": "GET", "path": path}


async def call(app: AdmissionControl, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http(path), receive, send)
    return sent


async def test_requests_beyond_the_limit_are_shed_with_retry_after() -> None:
    inner = SlowApp()
    admission = AdmissionControl(inner, max_in_flight=2)
    held = [asyncio.ensure_future(call(admission, "/items/1")) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.in_flight == 2
    shed = await call(admission, "/items/2")
    assert shed[0]["status"] == 503
    assert (b"retry-after", b"1") in shed[0]["headers"]
    assert admission.shed == 1
    inner.release.set()
    assert [m[0]["status"] for m in await asyncio.gather(*held)] == [200, 200]
    assert admission.in_flight == 0
    assert (await call(admission, "/items/3"))[0]["status"] == 200


async def test_health_checks_are_never_shed() -> None:
    inner = SlowApp()
    admission = AdmissionControl(inner, max_in_flight=1)
    held = asyncio.ensure_future(call(admission, "/items/1"))
    await asyncio.sleep(0)
    inner.release.set()
    for path in ("/health", "/ready"):
        assert (await call(admission, path))[0]["status"] == 200
    await held


async def test_zero_means_no_limit() -> None:
    inner = SlowApp()
    admission = AdmissionControl(inner, max_in_flight=0)
    held = [asyncio.ensure_future(call(admission, "/items/1")) for _ in range(50)]
    await asyncio.sleep(0)
    assert admission.in_flight == 50
    inner.release.set()
    assert all(m[0]["status"] == 200 for m in await asyncio.gather(*held))
