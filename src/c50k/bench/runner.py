"""One measurement step: a target under one load, with its server-side figures and checks.

A scenario is a list of steps over several targets (c50k and the baselines), run one after the
other in the same invocation, so their ratios come from the same machine state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from c50k.bench.h2load import H2loadOptions, run_h2load
from c50k.bench.machine import Limit, Machine
from c50k.bench.results import Aggregate, GeneratorError, GeneratorRun
from c50k.bench.sampling import ServerFigures, sample, sample_every
from c50k.bench.targets import Target
from c50k.bench.wrk import WrkOptions, run_wrk
from c50k.settings import Settings

# Connections one generator process takes on: well inside the 20,000-file limit.
CONNECTIONS_PER_GENERATOR = 12_500
# Connections opened in one wave by a staggered run. Opening 50,000 at once overflowed the
# listen backlogs (somaxconn 4096 per socket): the kernel dropped the handshakes' last ACKs and
# the requests behind them, and their retransmissions backed off until some connections got a
# first answer only after 60 s. Waves this size, a second apart, fit the backlogs.
CONNECTIONS_PER_WAVE = 5_000
# Clients one h2load thread opens. A thread connects all its clients before it sends their
# first requests, and while a wave arrived a connect() took a millisecond and more: with 5,000
# clients a thread (one per process) left its first connections silent past a load balancer's
# 5 s request-head timeout, which cut 9,700 of them in one run; with 1,000, 19,344 answers were
# 408; with 250, 2,212 (HAProxy, 50,000 connections).
CLIENTS_PER_THREAD = 250
LATENCY_CURVE = (50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Step:
    target: str
    label: str
    connections: int
    aggregate: Aggregate
    server: ServerFigures
    upstream_requests: int | None = None
    service: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    # What a scenario measured beyond the load generators' view (e.g. which role served reads).
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def throughput(self) -> float:
        return self.aggregate.throughput

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, passed, detail))

    def to_json(self) -> dict[str, Any]:
        latency = self.aggregate.latency
        return {
            "target": self.target,
            "label": self.label,
            "connections": self.connections,
            "service": self.service,
            "aggregate": self.aggregate.summary(),
            "latency_curve_ms": [[p, latency.percentile(p) / 1000] for p in LATENCY_CURVE],
            "timeline": [[s, ok, bad] for s, (ok, bad) in self.aggregate.timeline.items()],
            "generators": [
                {
                    "tool": run.tool,
                    "command": run.command,
                    "url": run.url,
                    "connections": run.connections,
                    "summary": Aggregate([run]).summary(),
                }
                for run in self.aggregate.runs
            ],
            "server": self.server.summary(self.connections, self.aggregate.requests),
            "upstream_requests": self.upstream_requests,
            "checks": [check.to_json() for check in self.checks],
            "figures": self.figures,
            "passed": self.passed,
        }


@dataclass
class Context:
    """What every scenario needs: where to write, the machine, the knobs, the display."""

    workdir: Path
    machine: Machine
    addresses: list[str]
    duration_seconds: int
    baselines_dir: Path
    targets: list[str]
    console: Console
    # c50k's settings in this environment, read once by the command line: what every c50k
    # target starts from before a scenario's own variables.
    settings: Settings
    # --target URL: measure that service instead of starting c50k and the baselines.
    external_url: str | None = None
    # --connections: the scenario's connection count (users for locust) instead of its own.
    connections: int | None = None
    limits: list[Limit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step_dir(self, *names: str) -> Path:
        path = self.workdir.joinpath(*names)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def warn(self, limit: Limit) -> None:
        if limit not in self.limits:
            self.limits.append(limit)
            self.console.print(f"[yellow]limit:[/] {limit}")


def spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal positive shares (the first ones larger)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def generator_count(connections: int) -> int:
    return max(1, math.ceil(connections / CONNECTIONS_PER_GENERATOR))


def wrk_loads(
    target: Target,
    addresses: Sequence[str],
    connections: int,
    paths: list[str],
    *,
    duration: int,
    timeout: int,
) -> list[WrkOptions]:
    """wrk processes for `connections`, each on its own destination address in turn."""
    shares = spread(connections, max(generator_count(connections), 1))
    return [
        WrkOptions(
            url=f"http://{addresses[i % len(addresses)]}:{target.port}{paths[0]}",
            connections=share,
            threads=min(2, share),
            duration_seconds=duration,
            timeout_seconds=timeout,
            paths=paths,
        )
        for i, share in enumerate(shares)
    ]


def h2load_loads(
    target: Target,
    addresses: Sequence[str],
    clients: int,
    paths: list[str],
    workdir: Path,
    *,
    requests_per_client: int | None = None,
    per_process: int = CONNECTIONS_PER_GENERATOR,
    per_thread: int | None = None,
    **options: Any,
) -> list[H2loadOptions]:
    """h2load processes for `clients`, spread over processes and destination addresses (and
    with `per_thread`, over threads of at most that many clients); with
    `requests_per_client`, a request-count run instead of a duration run."""
    shares = spread(clients, max(math.ceil(clients / per_process), len(addresses)))
    loads = []
    for i, share in enumerate(shares):
        base = f"http://{addresses[i % len(addresses)]}:{target.port}"
        if requests_per_client is not None:
            options["requests"] = share * requests_per_client
        if per_thread is not None:
            options["threads"] = math.ceil(share / per_thread)
        loads.append(
            H2loadOptions(
                urls=[base + path for path in paths],
                clients=share,
                log_file=workdir / f"h2load-{i}.log",
                **options,
            )
        )
    return loads


async def upstream_count(upstream: Target | None) -> int | None:
    if upstream is None:
        return None
    async with httpx.AsyncClient(timeout=10) as http:
        stats = (await http.get(f"{upstream.base_url}/stats")).json()
    return int(stats["requests"])


async def measure(
    ctx: Context,
    target: Target,
    label: str,
    loads: Sequence[WrkOptions | H2loadOptions],
    *,
    upstream: Target | None = None,
    service: dict[str, str] | None = None,
    stagger_seconds: float = 0.0,
) -> Step:
    """Run the generators side by side against `target`, sampling its processes meanwhile;
    with `stagger_seconds`, generator i starts i x stagger_seconds after the first."""
    workdir = ctx.step_dir(target.name, label.replace(" ", "-"))
    figures = ServerFigures()
    figures.idle = sample(target.server_pids(), 0.0)
    before = await upstream_count(upstream)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_every(1.0, target.server_pids, figures, stop))

    async def run(index: int, load: WrkOptions | H2loadOptions) -> GeneratorRun:
        await asyncio.sleep(index * stagger_seconds)
        if isinstance(load, WrkOptions):
            return await run_wrk(load, workdir)
        return await run_h2load(load, workdir)

    runs = [run(i, load) for i, load in enumerate(loads)]
    connections = sum(
        load.connections if isinstance(load, WrkOptions) else load.clients for load in loads
    )
    try:
        expected = _expected_seconds(loads) + stagger_seconds * (len(loads) - 1)
        with progress(ctx, f"{target.name}: {label}", expected):
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
    finally:
        stop.set()
        await sampler
    # A generator that failed (it could not connect, or outlived its limit against a server
    # that stopped answering) fails the step, not the whole benchmark.
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for failure in failed:
        if not isinstance(failure, GeneratorError):
            raise failure
    results = [o for o in outcomes if isinstance(o, GeneratorRun)]
    after = await upstream_count(upstream)
    step = Step(
        target.name,
        label,
        connections,
        Aggregate(results),
        figures,
        upstream_requests=None if before is None or after is None else after - before,
        service=service or {},
    )
    for failure in failed:
        step.check("generator finished", False, str(failure).splitlines()[0])
    summary = step.aggregate.summary()
    latency = summary["latency_ms"]
    ctx.console.print(
        f"  {target.name:>15} {label:<18} {summary['throughput_rps']:>9,.0f} rps"
        f"  p50 {latency['p50']:>7.1f}  p99 {latency['p99']:>7.1f} ms"
        f"  non-2xx {summary['non_2xx']}  socket errors {sum(summary['socket_errors'].values())}",
        highlight=False,
    )
    return step


def _expected_seconds(loads: Sequence[WrkOptions | H2loadOptions]) -> float:
    seconds = [
        float(load.duration_seconds)
        if isinstance(load, WrkOptions)
        else (load.duration_seconds or load.max_seconds)
        for load in loads
    ]
    return max(seconds, default=1.0)


@contextlib.contextmanager
def progress(ctx: Context, description: str, seconds: float) -> Iterator[None]:
    """A bar that fills over the expected duration while generators run (rich)."""
    bar = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=ctx.console,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=seconds)

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                bar.advance(task, 0.5)

        ticker = asyncio.get_running_loop().create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()


async def with_target(
    start: Callable[[], Target], use: Callable[[Target], Awaitable[list[Step]]]
) -> list[Step]:
    """Start a target (in a thread: starting waits on HTTP), use it, always stop it."""
    starting = asyncio.ensure_future(asyncio.to_thread(start))
    try:
        target = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Ctrl-C while it started: the thread finishes starting it; stop it, never leave it.
        started = await starting
        await asyncio.to_thread(started.stop)
        raise
    try:
        return await use(target)
    finally:
        await asyncio.to_thread(target.stop)
