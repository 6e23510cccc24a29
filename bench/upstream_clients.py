"""Which HTTP client library should one worker share for the upstream fan-out?

    .venv/bin/python bench/upstream_clients.py [--calls 20000] [--concurrency 128] [--rounds 3]

Starts the project's mock upstream (`c50k upstream`) on a free loopback port, then, in this one
asyncio process on uvloop, runs a fixed number of GET /posts/{id} calls (ids varying) at a fixed
concurrency through each variant:

- aiohttp-shared: one aiohttp.ClientSession, configured as c50k/upstream/client.py does;
- httpx-shared: one httpx.AsyncClient (Limits max_connections=256);
- httpx-per-call: a new httpx.AsyncClient per call (the tutorial form), with far fewer calls;
- aiosonic-shared: one aiosonic.HTTPClient (pure Python, asyncio streams);
- pyreqwest-shared: one pyreqwest Client (Rust reqwest/hyper; Tokio runtime on its own thread);
- httptools-ref: a reference point, not a product: a minimal keep-alive HTTP/1.1 client written
  here on asyncio.Protocol + httptools' response parser (RefH1Pool below).

Every shared client gets the pool bound (256), total timeout (2 s), connect timeout (1 s) and
no redirects of UpstreamSettings' defaults. aiosonic and pyreqwest are candidates, not c50k
dependencies (`.venv/bin/pip install aiosonic pyreqwest`): a variant whose package is missing
is skipped, and mypy passes with or without them. rnet 2.4.2 is left out: its pool_max_size
does not bound the connections in use (64 calls in flight opened 64 connections with 8).
aiosonic 1.3.3 is measured but unsafe for the service: after a call times out on a reused
keep-alive connection, that connection goes back to the pool and the next call on it reads
the late answer to the timed-out one (another id's body).

Each run measures the wall time and this process's CPU time (time.process_time), and checks
that every body is JSON with the right "id". The variants are interleaved over the rounds, in
a rotated order, so noise on a shared machine hits them all alike. Reported: medians per
variant, and ratios computed inside each round (side by side) and then the median over rounds.

Every run is bounded in calls and in time: no new call starts after --max-seconds (60 s), and
calls still in flight get 30 s more. At concurrency 128 the shared httpx client (httpx 0.28.1,
httpcore 1.0.9) is slow enough to hit that cap; such runs are marked "(time cap)".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import httpx
import orjson
import uvloop

from c50k.settings import UpstreamSettings
from c50k.stack.process import ManagedProcess, free_port, http_ok

if TYPE_CHECKING:
    # Candidates, not c50k dependencies: each is imported when its variant opens, and a variant
    # whose package is missing is skipped. Without the package mypy sees Any, hence the ignores.
    from pyreqwest.client import Client as PyreqwestClient  # type: ignore[import-not-found,unused-ignore]

START_TIMEOUT = 30.0
# Calls in flight when the time cap stops new ones get this long to finish.
HARD_STOP_GRACE = 30.0
HEADERS = {"User-Agent": "c50k", "Accept": "application/json"}
# A prime stride: consecutive calls ask for ids far apart, every run a different sequence.
ID_STRIDE = 7919


class Client(Protocol):
    name: str

    async def open(self) -> None: ...

    async def get(self, url: str) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class AiohttpShared:
    """One session for the whole run, with the settings of c50k.upstream.client."""

    name = "aiohttp-shared"

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        s = self._settings
        connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            limit_per_host=s.max_connections,
            keepalive_timeout=s.keepalive_seconds,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=s.timeout_seconds, sock_connect=s.connect_timeout_seconds
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            headers=HEADERS,
            raise_for_status=False,
            auto_decompress=True,
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("not open")
        async with self._session.get(url, allow_redirects=False) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxShared:
    """One AsyncClient for the whole run, with the same pool size and timeouts."""

    name = "httpx-shared"

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        s = self._settings
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_connections,
                keepalive_expiry=s.keepalive_seconds,
            ),
            timeout=httpx.Timeout(s.timeout_seconds, connect=s.connect_timeout_seconds),
            headers=HEADERS,
            follow_redirects=False,
            # Loopback only: no proxy from the environment may take the traffic elsewhere.
            trust_env=False,
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        if self._client is None:
            raise RuntimeError("not open")
        response = await self._client.get(url)
        return response.status_code, response.content

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class HttpxPerCall:
    """`async with httpx.AsyncClient() as client:` around every call, as tutorials write it."""

    name = "httpx-per-call"

    async def open(self) -> None:
        return None

    async def get(self, url: str) -> tuple[int, bytes]:
        # trust_env=False is the one departure from the tutorial: loopback traffic only.
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(url)
            return response.status_code, response.content

    async def close(self) -> None:
        return None


class PyreqwestShared:
    """One pyreqwest Client (Rust reqwest/hyper on a Tokio runtime thread), same limits."""

    name = "pyreqwest-shared"

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._client: PyreqwestClient | None = None

    async def open(self) -> None:
        from pyreqwest.client import ClientBuilder  # noqa: PLC0415 -- optional candidate

        s = self._settings
        self._client = (
            ClientBuilder()
            # Bounds requests in flight, so connections in use; idle ones are bounded apart.
            .max_connections(s.max_connections)
            .pool_max_idle_per_host(s.max_connections)
            .pool_idle_timeout(timedelta(seconds=s.keepalive_seconds))
            .timeout(timedelta(seconds=s.timeout_seconds))
            .connect_timeout(timedelta(seconds=s.connect_timeout_seconds))
            .follow_redirects(False)
            .error_for_status(False)
            .user_agent(HEADERS["User-Agent"])
            .default_headers({"Accept": HEADERS["Accept"]})
            .no_proxy()
            .build()
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        if self._client is None:
            raise RuntimeError("not open")
        response = await self._client.get(url).build().send()
        body = await response.bytes()
        # pyreqwest's Bytes is a buffer; orjson wants bytes (or a memoryview), as the service does.
        return response.status, body.to_bytes()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class AiosonicShared:
    """One aiosonic HTTPClient (pure Python on asyncio streams), same limits.

    aiosonic ships no type hints: its values are Any inside this class and typed at its edges.
    """

    name = "aiosonic-shared"

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._client: Any = None

    async def open(self) -> None:
        # Ships no type hints (no py.typed): untyped when installed, not found when not.
        from aiosonic import HTTPClient, connectors, pools, timeout  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

        s = self._settings
        connector = connectors.TCPConnector(
            pool_configs={
                ":default": pools.PoolConfig(
                    size=s.max_connections,
                    # Like aiohttp: no recycling after N requests; idle ones close at keepalive.
                    max_conn_requests=None,
                    max_conn_idle_ms=int(s.keepalive_seconds * 1000),
                )
            },
            timeouts=timeout.Timeouts(
                sock_connect=s.connect_timeout_seconds,
                sock_read=None,
                pool_acquire=None,
                request_timeout=s.timeout_seconds,
            ),
        )
        self._client = HTTPClient(
            connector=connector, handle_cookies=False, follow=False, trust_env=False
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        if self._client is None:
            raise RuntimeError("not open")
        response = await self._client.get(url, headers=HEADERS)
        status: int = response.status_code
        body: bytes = await response.content()
        return status, body

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


# What RefH1Pool puts in a request line as it is: no space, control or non-ASCII character.
_SAFE_PATH = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/?=&%+,;:@!$'()*"
)


class _H1Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of RefH1Pool: one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.usable = False
        self.got_bytes = False  # of the current response
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not an asyncio.Transport subclass, but has its methods).
        self._transport = cast(asyncio.Transport, transport)
        self.usable = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._fail(ConnectionResetError(f"upstream closed the connection: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"invalid HTTP response: {exc}"))
            self.abort()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        body, self._body = b"".join(self._body), []
        if not self._parser.should_keep_alive():
            self.usable = False
        if waiter is None:  # An answer nobody asked for: the connection can't be trusted.
            self.abort()
        elif not waiter.done():
            waiter.set_result((self._parser.get_status_code(), body))

    def send(
        self, request: bytes, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[tuple[int, bytes]]:
        if self._transport is None:
            raise RuntimeError("not connected")
        self._waiter = waiter = loop.create_future()
        self.got_bytes = False
        self._transport.write(request)
        return waiter

    def expire(self) -> None:
        self._fail(TimeoutError("upstream call timed out"))
        self.abort()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.abort()


class RefH1Pool:
    """Reference point, not a product: a minimal keep-alive HTTP/1.1 client for one origin.

    asyncio.Protocol + httptools' response parser; a LIFO pool of idle connections; at most
    max_connections in use (a semaphore); a total deadline per call (pool wait, connect,
    exchange) and a connect timeout; redirects are returned, not followed; a GET on a reused
    connection that closed before any byte of its answer is sent once more on another.
    Failures raise OSError (ConnectionError) or TimeoutError. No TLS, no proxies, no
    decompression, no body-size cap, identity bodies by Content-Length or chunked only.
    """

    name = "httptools-ref"

    def __init__(self, settings: UpstreamSettings, origin: str) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or parts.hostname is None or parts.path not in {"", "/"}:
            raise ValueError(f"an http://host[:port] origin, not {origin!r}")
        self._settings = settings
        self._origin = f"http://{parts.netloc}"
        self._host, self._port = parts.hostname, parts.port or 80
        self._tail = (
            f" HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {HEADERS['User-Agent']}\r\n"
            f"Accept: {HEADERS['Accept']}\r\n\r\n"
        ).encode("latin-1")
        self._idle: list[_H1Connection] = []
        self._slots: asyncio.Semaphore | None = None

    async def open(self) -> None:
        self._slots = asyncio.Semaphore(self._settings.max_connections)

    async def get(self, url: str) -> tuple[int, bytes]:
        slots = self._slots
        if slots is None:
            raise RuntimeError("not open")
        request = self._request(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.timeout_seconds
        if slots.locked():
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        else:
            await slots.acquire()  # Returns at once, without yielding.
        try:
            for attempt in (1, 2):
                conn, reused = self._pop_idle(loop), True
                if conn is None:
                    conn, reused = await self._connect(loop, deadline), False
                timer = loop.call_at(deadline, conn.expire)
                try:
                    status, body = await conn.send(request, loop)
                except ConnectionError:
                    conn.abort()
                    if attempt == 1 and reused and not conn.got_bytes:
                        continue  # The upstream closed an idle keep-alive connection.
                    raise
                except BaseException:
                    conn.abort()
                    raise
                finally:
                    timer.cancel()
                if conn.usable:
                    conn.idle_since = loop.time()
                    self._idle.append(conn)
                else:
                    conn.abort()
                return status, body
            raise AssertionError("unreachable")
        finally:
            slots.release()

    def _request(self, url: str) -> bytes:
        origin = self._origin
        path = url[len(origin) :]
        if not url.startswith(origin) or path[:1] != "/" or not _SAFE_PATH.issuperset(path):
            raise ValueError(f"not a path on {origin}: {url!r}")
        return b"GET " + path.encode("ascii") + self._tail

    def _pop_idle(self, loop: asyncio.AbstractEventLoop) -> _H1Connection | None:
        expired = loop.time() - self._settings.keepalive_seconds
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and conn.idle_since > expired:
                return conn
            conn.abort()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _H1Connection:
        async with asyncio.timeout_at(
            min(deadline, loop.time() + self._settings.connect_timeout_seconds)
        ):
            _, conn = await loop.create_connection(_H1Connection, self._host, self._port)
        return conn

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()
        self._slots = None


@dataclass
class Tally:
    started: int = 0
    ok: int = 0
    bad_status: int = 0
    bad_body: int = 0
    errors: int = 0
    first_failure: str = ""

    @property
    def done(self) -> int:
        return self.ok + self.bad_status + self.bad_body + self.errors

    def fail(self, what: str) -> None:
        if not self.first_failure:
            self.first_failure = what


@dataclass
class Sample:
    variant: str
    round: int
    planned: int
    tally: Tally
    wall_seconds: float
    cpu_seconds: float
    upstream_cpu_seconds: float
    # The time cap stopped new calls before `planned` were made: a shorter run, not a failure.
    capped: bool = False
    # The hard stop cancelled calls still in flight: those count as failures.
    cut_off: bool = False
    warmup_failures: int = 0

    @property
    def done(self) -> int:
        return self.tally.done

    @property
    def failures(self) -> int:
        t = self.tally
        lost = t.started - t.done
        return t.bad_status + t.bad_body + t.errors + lost + self.warmup_failures

    @property
    def first_failure(self) -> str:
        return self.tally.first_failure or ("calls cut off in flight" if self.cut_off else "")

    @property
    def calls_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_seconds / self.done * 1e6 if self.done else float("nan")

    @property
    def upstream_cpu_us_per_call(self) -> float:
        return self.upstream_cpu_seconds / self.done * 1e6 if self.done else float("nan")


def body_matches(body: bytes, item_id: int) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("id") == item_id


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5); the list starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    client: Client,
    base_url: str,
    ids: list[int],
    *,
    concurrency: int,
    tally: Tally,
    stop_issuing_at: float,
) -> None:
    """Make the calls with `concurrency` tasks; none starts after `stop_issuing_at`."""
    pending = iter(ids)  # Shared by the tasks: one event loop, so no lock is needed.

    async def one_task() -> None:
        for item_id in pending:
            if time.monotonic() >= stop_issuing_at:
                return
            tally.started += 1
            try:
                status, body = await client.get(f"{base_url}/posts/{item_id}")
            except Exception as exc:  # Every failure is counted; none stops the run.
                tally.errors += 1
                tally.fail(f"{type(exc).__name__}: {exc}")
                continue
            if status != 200:
                tally.bad_status += 1
                tally.fail(f"status {status} for id {item_id}")
            elif not body_matches(body, item_id):
                tally.bad_body += 1
                tally.fail(f"body for id {item_id}: {body[:80]!r}")
            else:
                tally.ok += 1

    tasks = [asyncio.ensure_future(one_task()) for _ in range(min(concurrency, len(ids)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def id_sequence(count: int, posts: int, offset: int) -> list[int]:
    return [(offset + i * ID_STRIDE) % posts + 1 for i in range(count)]


async def run_once(
    *,
    client: Client,
    round_no: int,
    base_url: str,
    upstream_pid: int,
    planned: int,
    args: argparse.Namespace,
) -> Sample:
    await client.open()
    try:
        # Untimed warm-up: a shared client opens its pool once per worker, not once per run.
        warm = id_sequence(min(args.concurrency, planned), args.posts, offset=round_no * 31 + 7)
        warm_tally = Tally()
        async with asyncio.timeout(args.max_seconds + HARD_STOP_GRACE):
            await drive(
                client,
                base_url,
                warm,
                concurrency=args.concurrency,
                tally=warm_tally,
                stop_issuing_at=time.monotonic() + args.max_seconds,
            )
        ids = id_sequence(planned, args.posts, offset=round_no * 1009)
        gc.collect()
        tally = Tally()
        cut_off = False
        up0, cpu0, wall0 = (
            process_cpu_seconds(upstream_pid),
            time.process_time(),
            time.perf_counter(),
        )
        try:
            # New calls stop at max_seconds; calls in flight get HARD_STOP_GRACE more.
            async with asyncio.timeout(args.max_seconds + HARD_STOP_GRACE):
                await drive(
                    client,
                    base_url,
                    ids,
                    concurrency=args.concurrency,
                    tally=tally,
                    stop_issuing_at=time.monotonic() + args.max_seconds,
                )
        except TimeoutError:
            cut_off = True
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        up = process_cpu_seconds(upstream_pid) - up0
    finally:
        await client.close()
    if warm_tally.first_failure and not tally.first_failure:
        tally.first_failure = f"warm-up: {warm_tally.first_failure}"
    return Sample(
        variant=client.name,
        round=round_no,
        planned=planned,
        tally=tally,
        wall_seconds=wall,
        cpu_seconds=cpu,
        upstream_cpu_seconds=up,
        capped=tally.started < planned,
        cut_off=cut_off,
        warmup_failures=len(warm) - warm_tally.ok,
    )


# Candidate variants and the package each needs; one whose package is missing is skipped.
CANDIDATES = {
    AiosonicShared.name: "aiosonic",
    PyreqwestShared.name: "pyreqwest",
}


def variant_names() -> list[str]:
    names = [AiohttpShared.name, HttpxShared.name, HttpxPerCall.name]
    names += [name for name, package in CANDIDATES.items() if find_spec(package) is not None]
    return [*names, RefH1Pool.name]


async def bench(args: argparse.Namespace, base_url: str, upstream_pid: int) -> list[Sample]:
    settings = UpstreamSettings()
    everything: list[tuple[Client, int]] = [
        (AiohttpShared(settings), args.calls),
        (HttpxShared(settings), args.calls),
        (HttpxPerCall(), args.per_call_calls),
        (AiosonicShared(settings), args.calls),
        (PyreqwestShared(settings), args.calls),
        (RefH1Pool(settings, base_url), args.calls),
    ]
    wanted = variant_names()
    skipped = sorted(set(CANDIDATES) - set(wanted))
    if skipped:
        print(f"skipped (package not installed): {', '.join(skipped)}", flush=True)
    clients = [(client, planned) for client, planned in everything if client.name in wanted]
    samples: list[Sample] = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(clients)
        for client, planned in clients[shift:] + clients[:shift]:
            sample = await run_once(
                client=client,
                round_no=round_no,
                base_url=base_url,
                upstream_pid=upstream_pid,
                planned=planned,
                args=args,
            )
            samples.append(sample)
            print(
                f"round {round_no} {sample.variant:<16} {sample.done:>6} calls"
                + (" (time cap)" if sample.capped else "           ")
                + " "
                f"{sample.wall_seconds:7.2f} s  {sample.calls_per_second:9.0f} calls/s  "
                f"{sample.cpu_us_per_call:8.1f} µs CPU/call  "
                f"upstream {sample.upstream_cpu_us_per_call:6.1f} µs/call  "
                f"failures {sample.failures}"
                + (f" ({sample.first_failure})" if sample.failures else ""),
                flush=True,
            )
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_round_ratios(samples: list[Sample], base: str, other: str) -> tuple[float, float]:
    """Median over rounds of (base calls/s ÷ other calls/s, other CPU/call ÷ base CPU/call)."""
    speed: list[float] = []
    cpu: list[float] = []
    for round_no in sorted({s.round for s in samples}):
        a = next((s for s in samples if s.round == round_no and s.variant == base), None)
        b = next((s for s in samples if s.round == round_no and s.variant == other), None)
        if a is None or b is None or not a.done or not b.done:
            continue
        speed.append(a.calls_per_second / b.calls_per_second)
        cpu.append(b.cpu_us_per_call / a.cpu_us_per_call)
    return median(speed), median(cpu)


def report(
    samples: list[Sample], args: argparse.Namespace, upstream_stats: dict[str, object]
) -> None:
    base = AiohttpShared.name
    present = {s.variant for s in samples}
    variants = [name for name in variant_names() if name in present]
    print()
    print("## Upstream client: one worker's fan-out calls to the mock upstream")
    print()
    print(
        "| variant | calls/run | calls/s | CPU µs/call | upstream CPU µs/call "
        "| aiohttp calls/s ÷ variant | variant CPU/call ÷ aiohttp | failures |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in variants:
        runs = [s for s in samples if s.variant == name]
        speed, cpu = per_round_ratios(samples, base, name) if name != base else (1.0, 1.0)
        print(
            f"| {name} | {int(median([float(s.done) for s in runs])):,}"
            f"{' (time cap)' if any(s.capped for s in runs) else ''} "
            f"| {median([s.calls_per_second for s in runs]):,.0f} "
            f"| {median([s.cpu_us_per_call for s in runs]):,.1f} "
            f"| {median([s.upstream_cpu_us_per_call for s in runs]):,.1f} "
            f"| {speed:.2f}x | {cpu:.2f}x | {sum(s.failures for s in runs)} |"
        )
    print()
    for name in variants:
        if name == base:
            continue
        speed, cpu = per_round_ratios(samples, base, name)
        print(
            f"aiohttp/{name}: aiohttp makes {speed:.2f}x the calls/s; "
            f"{name} spends {cpu:.2f}x the CPU per call"
        )
    print()
    print(
        f"Medians over {args.rounds} interleaved rounds (order rotated each round); ratios are "
        "taken inside each round, then the median over rounds. Each run is preceded by an "
        f"untimed warm-up of {args.concurrency} calls. Concurrency {args.concurrency}. "
        "CPU is this client process only (time.process_time: all its threads, the Tokio threads "
        "of the Rust clients included); the mock upstream, an aiohttp "
        "server on the same cores, is shown apart. A run marked (time cap) stopped starting "
        f"new calls after {args.max_seconds:g} s (--max-seconds) instead of making all "
        f"{args.calls:,}: its rate is still calls done / wall time."
    )
    print(
        f"Upstream /stats: {upstream_stats.get('requests')} requests, "
        f"by status {upstream_stats.get('by_status')}, max in flight "
        f"{upstream_stats.get('max_in_flight')}"
    )
    print()
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv])
    print(f"- command: `{command}` (cwd {Path.cwd()})")
    print(f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"- nproc: {len(os.sched_getaffinity(0))} ({platform.machine()}, {platform.system()})")
    print(f"- python: {platform.python_version()} ({sys.implementation.name})")
    libraries = ("aiohttp", "httpx", "httpcore", "uvloop", "httptools", *CANDIDATES.values())
    print(
        "- libraries: "
        + ", ".join(f"{lib} {installed_version(lib)}" for lib in libraries)
        # httpcore 1.0 retries `import sniffio` on every lock it makes when sniffio is absent.
        + f"; sniffio importable: {'yes' if find_spec('sniffio') else 'no'}"
    )


def installed_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per shared-client run")
    parser.add_argument(
        "--per-call-calls", type=int, default=500, help="calls per httpx-per-call run"
    )
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=100_000, help="ids 1..N exist upstream")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="time cap on one run: no new call starts after it (in-flight ones get 30 s)",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="where the upstream logs")
    args = parser.parse_args(argv)
    for name in ("calls", "per_call_calls", "concurrency", "rounds", "posts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def fetch_stats(base_url: str) -> dict[str, object]:
    async def get() -> dict[str, object]:
        async with aiohttp.ClientSession() as session, session.get(f"{base_url}/stats") as r:
            value = orjson.loads(await r.read())
            return value if isinstance(value, dict) else {}

    stats = asyncio.run(get())
    stats.pop("by_id", None)
    stats.pop("last_request_headers", None)
    return stats


def main() -> int:
    args = parse_args()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="c50k-bench-clients-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    upstream = ManagedProcess(
        "c50k upstream",
        [sys.executable, "-m", "c50k", "upstream", "--port", str(port), "--posts", str(args.posts)],
        log_dir / f"upstream-{port}.log",
    ).start()
    print(f"mock upstream pid {upstream.pid} on {base_url}, log {upstream.log_path}", flush=True)
    try:
        upstream.wait_until(lambda: http_ok(f"{base_url}/health"), START_TIMEOUT, "healthy")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            loop = runner.get_loop()
            print(f"event loop: {type(loop).__module__}.{type(loop).__name__}", flush=True)
            samples = runner.run(bench(args, base_url, upstream.pid))
        stats = fetch_stats(base_url)
    finally:
        code = upstream.stop()
        print(f"mock upstream stopped, exit code {code}", flush=True)
    report(samples, args, stats)
    return 1 if any(s.failures for s in samples) else 0


if __name__ == "__main__":
    sys.exit(main())
