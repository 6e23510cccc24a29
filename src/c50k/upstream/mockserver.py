"""`c50k upstream`: a JSONPlaceholder-style API to test and benchmark against.

GET /posts/{id} answers a deterministic post for ids 1..posts, 404 beyond. Latency, jitter,
failures and broken bodies are set by flags and can be changed while it runs (PUT /control).
GET /stats tells what the service really sent: requests served, the maximum in flight, the
count per id and the headers of the last request; POST /stats/reset starts counting anew.

It is the benchmarks' instrument, so it must cost little: on an asyncio.Protocol with
httptools' parser it spends a fraction of the CPU per request that aiohttp's server did, and
that CPU would otherwise be taken from the service it measures on the same cores
(BENCHMARKS.md, "Mock upstream").
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any, cast

import httptools
import orjson

from c50k.items.demo import demo_post

# Ids counted one by one in /stats; beyond this, only the total grows (bounded memory).
MAX_TRACKED_IDS = 100_000
MAX_CONTROL_BODY = 4096
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
           413: b"Payload Too Large", 422: b"Unprocessable Content"}  # fmt: skip
INVALID_JSON = b'{"id": '


@dataclass
class Behaviour:
    posts: int = 100
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # Share of requests answered with `status` instead of the post.
    error_rate: float = 0.0
    status: int = 500
    invalid_json: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool) != isinstance(value, bool) or not isinstance(
                value, int | float
            ):
                raise ValueError(f"{name} must be a {type(current).__name__}")
        for name, value in changes.items():
            setattr(self, name, type(getattr(self, name))(value))


@dataclass
class Stats:
    connections: int = 0  # Opened since the last reset: keep-alive reuse shows here.
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_id: Counter[int] = field(default_factory=Counter)
    last_request_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_id": {str(k): v for k, v in sorted(self.by_id.items())},
            "last_request_headers": {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self.last_request_headers
            },
        }


def response(status: int, body: bytes, *, keep_alive: bool = True) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        REASONS.get(status, b"Status"),
        len(body),
    )
    return head + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n") + body


@lru_cache(maxsize=65_536)
def post_response(post_id: int) -> bytes:
    return response(200, orjson.dumps(demo_post(post_id)))


@dataclass
class Request:
    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


class MockUpstream:
    """The behaviour and counters one mock server shares between its connections."""

    def __init__(self, behaviour: Behaviour, seed: int | None = None) -> None:
        self.behaviour = behaviour
        self.stats = Stats()
        self.random = random.Random(seed)  # noqa: S311 -- fault injection, not cryptography.
        self.connections: set[asyncio.Transport] = set()

    def close_connections(self) -> None:
        """Close every client connection (a stopping server's listener alone leaves them)."""
        for transport in list(self.connections):
            transport.close()
        self.connections.clear()

    def delay(self) -> float:
        b = self.behaviour
        return (b.latency_ms + (self.random.uniform(0, b.jitter_ms) if b.jitter_ms else 0)) / 1000

    def post(self, raw_id: bytes, request: Request) -> tuple[int, bytes]:
        stats, behaviour = self.stats, self.behaviour
        stats.last_request_headers = request.headers
        post_id = int(raw_id) if raw_id.isdigit() else -1
        if post_id >= 0 and (post_id in stats.by_id or len(stats.by_id) < MAX_TRACKED_IDS):
            stats.by_id[post_id] += 1
        if behaviour.error_rate > 0 and self.random.random() < behaviour.error_rate:
            status, body = behaviour.status, b'{"error":"injected"}'
        elif not 1 <= post_id <= behaviour.posts:
            status, body = 404, b"{}"
        elif behaviour.invalid_json:
            status, body = 200, INVALID_JSON
        else:
            stats.by_status[200] += 1
            return 200, post_response(post_id)
        stats.by_status[status] += 1
        return status, response(status, body)

    def control(self, request: Request) -> bytes:
        if request.method == b"GET":
            return response(200, orjson.dumps(asdict(self.behaviour)))
        try:
            changes = orjson.loads(request.body)
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            self.behaviour.update(changes)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return response(422, orjson.dumps({"detail": str(exc)}))
        return response(200, orjson.dumps(asdict(self.behaviour)))

    def route(self, request: Request) -> bytes | None:
        """The answer to anything but a post (None for a post)."""
        path, method = request.path.split(b"?", 1)[0], request.method
        if path.startswith(b"/posts/"):
            return None if method == b"GET" else response(405, b'{"detail":"Method Not Allowed"}')
        routes: dict[tuple[bytes, bytes], Callable[[], bytes]] = {
            (b"GET", b"/health"): lambda: response(200, b'{"status":"ok"}'),
            (b"GET", b"/stats"): lambda: response(200, orjson.dumps(self.stats.as_json())),
            (b"POST", b"/stats/reset"): self._reset,
            (b"GET", b"/control"): lambda: self.control(request),
            (b"PUT", b"/control"): lambda: self.control(request),
        }
        answer = routes.get((method, path))
        if answer is not None:
            return answer()
        if any(p == path for _m, p in routes):
            return response(405, b'{"detail":"Method Not Allowed"}')
        return response(404, b'{"detail":"Not Found"}')

    def _reset(self) -> bytes:
        self.stats = Stats(in_flight=self.stats.in_flight)
        return response(200, b'{"status":"reset"}')


class MockProtocol(asyncio.Protocol):
    """One client connection. Requests are answered in order, one at a time (HTTP/1.1)."""

    def __init__(self, mock: MockUpstream) -> None:
        self.mock = mock
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.mock.stats.connections += 1
        self.mock.connections.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.mock.connections.discard(self.transport)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(response(400, b'{"detail":"Bad Request"}', keep_alive=False), close=True)

    # httptools callbacks.
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if sum(map(len, self._body)) + len(body) > MAX_CONTROL_BODY:
            raise httptools.HttpParserError("body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        request = Request(method, self._url, self._headers, b"".join(self._body),
                          self.parser.should_keep_alive())  # fmt: skip
        self.queue.append(request)
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while self.queue and self.transport is not None:
            request = self.queue.popleft()
            answer = self.mock.route(request)
            if answer is not None:
                self._write(answer, close=not request.keep_alive)
                continue
            stats = self.mock.stats
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            delay = self.mock.delay()
            if delay <= 0:
                self._answer_post(request)
                continue
            self.busy = True
            asyncio.get_running_loop().call_later(delay, self._answer_post_later, request)
            return

    def _answer_post(self, request: Request) -> None:
        self.mock.stats.in_flight -= 1
        _status, answer = self.mock.post(request.path[len(b"/posts/") :].split(b"?")[0], request)
        self._write(answer, close=not request.keep_alive)

    def _answer_post_later(self, request: Request) -> None:
        self.busy = False
        self._answer_post(request)
        self._next()

    def _write(self, data: bytes, *, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.mock.connections.discard(self.transport)
            self.transport.close()
            self.transport = None


async def start(host: str, port: int, mock: MockUpstream) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: MockProtocol(mock), host, port, backlog=4096)


async def serve(host: str, port: int, mock: MockUpstream) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Sent by Ctrl-C, or by whoever started us.
        loop.add_signal_handler(signum, stop.set)
    async with await start(host, port, mock):
        await stop.wait()
        mock.close_connections()


def run(host: str, port: int, behaviour: Behaviour, seed: int | None = None) -> None:
    import uvloop  # noqa: PLC0415 -- only the standalone server needs it.

    uvloop.run(serve(host, port, MockUpstream(behaviour, seed)))
