"""Which HTTP client library should one worker share for the upstream fan-out?

    .venv/bin/python bench/upstream_clients.py [--calls 20000] [--concurrency 128] [--rounds 3]

Starts the project's mock upstream (`c50k upstream`) on a free loopback port, then, in this one
asyncio process on uvloop, runs a fixed number of GET /posts/{id} calls (ids varying) at a fixed
concurrency through each variant:

- aiohttp-shared: one aiohttp.ClientSession, configured as c50k/upstream/client.py does;
- httpx-shared: one httpx.AsyncClient (Limits max_connections=256);
- httpx-per-call: a new httpx.AsyncClient per call (the tutorial form), with far fewer calls.

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
from datetime import UTC, datetime
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Protocol

import aiohttp
import httpx
import orjson
import uvloop

from c50k.settings import UpstreamSettings
from c50k.stack.process import ManagedProcess, free_port, http_ok

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


async def bench(args: argparse.Namespace, base_url: str, upstream_pid: int) -> list[Sample]:
    settings = UpstreamSettings()
    clients: list[tuple[Client, int]] = [
        (AiohttpShared(settings), args.calls),
        (HttpxShared(settings), args.calls),
        (HttpxPerCall(), args.per_call_calls),
    ]
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
                f"round {round_no} {sample.variant:<15} {sample.done:>6} calls"
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
    variants = [AiohttpShared.name, HttpxShared.name, HttpxPerCall.name]
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
    speed_shared, cpu_shared = per_round_ratios(samples, base, HttpxShared.name)
    speed_per_call, cpu_per_call = per_round_ratios(samples, base, HttpxPerCall.name)
    print(
        f"aiohttp/httpx-shared: aiohttp makes {speed_shared:.2f}x the calls/s; "
        f"httpx-shared spends {cpu_shared:.2f}x the CPU per call"
    )
    print(
        f"aiohttp/httpx-per-call: aiohttp makes {speed_per_call:.2f}x the calls/s; "
        f"httpx-per-call spends {cpu_per_call:.2f}x the CPU per call"
    )
    print()
    print(
        f"Medians over {args.rounds} interleaved rounds (order rotated each round); ratios are "
        "taken inside each round, then the median over rounds. Each run is preceded by an "
        f"untimed warm-up of {args.concurrency} calls. Concurrency {args.concurrency}. "
        "CPU is this client process only (time.process_time); the mock upstream, an aiohttp "
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
    print(
        "- libraries: "
        + ", ".join(f"{lib} {version(lib)}" for lib in ("aiohttp", "httpx", "httpcore", "uvloop"))
        # httpcore 1.0 retries `import sniffio` on every lock it makes when sniffio is absent.
        + f"; sniffio importable: {'yes' if find_spec('sniffio') else 'no'}"
    )


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
