"""The `db` scenario: the data tier alone, cache off, no upstream, on one shard of a primary
and a streaming replica (started by the stack's own code).

Reads are measured beside a peer at the driver's own speed (bench/baselines/asyncpg_peer.py: a
raw ASGI app with an asyncpg pool under the same gunicorn + uvicorn worker, same workers, same
pool size, same ids), first on the primary alone, then on the replica. A last step mixes in 10%
writes, which read-your-writes then routes.

What it reports beyond the load generators comes from c50k's own metrics exporter, scraped
before and after each step: how many reads each role (primary, replica) served, and how long
requests waited for a pooled connection.
"""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
import orjson

from c50k.bench.runner import Context, Step, measure, with_target, wrk_loads
from c50k.bench.scenarios import (
    WARM_UP_CONNECTIONS,
    WARM_UP_SECONDS,
    WRK_TIMEOUT_SECONDS,
    ScenarioResult,
    common_checks,
)
from c50k.bench.targets import Target, start_asyncpg_peer, start_c50k
from c50k.bench.wrk import WRITE_PREFIX
from c50k.items.demo import demo_post
from c50k.settings import PostgresSettings
from c50k.stack.postgres import stack_postgres_settings
from c50k.stack.process import free_port
from c50k.stack.stack import StackPlan, temporary_stack
from c50k.store.postgres import PostgresStore

ITEMS = 1000
WRITE_EVERY = 10  # One request in ten is a PUT.
WITH_REPLICAS = "reads on replicas"
PRIMARIES_ONLY = "primaries only"
# The peer as the issue that asked for it wrote it (asyncpg's pool as it comes: a reset query
# after every fetch), and the same without that reset, as c50k releases connections.
PEERS = {"asyncpg": {}, "asyncpg-no-reset": {"PEER_POOL_RESET": "none"}}
TARGET_RATIO = 0.9  # c50k's reads at >= 0.9x the throughput of the asyncpg peer.
SEED_CONCURRENCY = 8  # Below the pool size: waits stay in the semaphore, not the pool.


def mixed_paths(items: int = ITEMS, write_every: int = WRITE_EVERY) -> list[str]:
    """GET /items/1 .. /items/N, with every `write_every`-th one a PUT of that item instead."""
    return [
        f"{WRITE_PREFIX}/items/{i}" if i % write_every == 0 else f"/items/{i}"
        for i in range(1, items + 1)
    ]


async def seed(settings: PostgresSettings, items: int) -> None:
    """Items 1..items+1 (GET /items/N reads N + 1 too), each on the shard that owns it."""
    store = PostgresStore(settings)
    await store.open()
    try:
        gate = asyncio.Semaphore(SEED_CONCURRENCY)

        async def put(item_id: int) -> None:
            async with gate:
                await store.put(item_id, orjson.dumps(demo_post(item_id)))

        await asyncio.gather(*(put(i) for i in range(1, items + 2)))
    finally:
        await store.close()


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    return {
        name: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, _, value in [line.rpartition(" ")]
    }


def _label(sample: str, label: str) -> str:
    start = sample.index(f'{label}="') + len(label) + 2
    return sample[start : sample.index('"', start)]


def store_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Reads per role and pool waits during the step, from two scrapes of the exporter."""

    def grown(prefix: str) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix)}

    figures: dict[str, float] = {"primary": 0.0, "replica": 0.0}
    for sample, reads in grown("c50k_store_reads_total{").items():
        figures[_label(sample, "role")] += reads
    waits = grown("c50k_store_pool_wait_seconds_")
    count = sum(v for k, v in waits.items() if k.startswith("c50k_store_pool_wait_seconds_count"))
    total = sum(v for k, v in waits.items() if k.startswith("c50k_store_pool_wait_seconds_sum"))
    figures["checkouts"] = count
    figures["wait_mean_ms"] = 1000 * total / count if count else 0.0
    figures["wait_p99_ms"] = 1000 * _bucket_quantile(waits, 0.99, count)
    return figures


def _bucket_quantile(samples: dict[str, float], quantile: float, count: float) -> float:
    """The upper bound of the histogram bucket that holds the quantile (summed over labels)."""
    by_bound: dict[float, float] = {}
    for sample, value in samples.items():
        if sample.startswith("c50k_store_pool_wait_seconds_bucket"):
            bound = float(_label(sample, "le"))
            by_bound[bound] = by_bound.get(bound, 0.0) + value
    for bound in sorted(by_bound):
        if count and by_bound[bound] >= quantile * count:
            return bound
    return 0.0


def cpu_per_request(step: Step) -> str:
    cpu = step.server.summary(step.connections, step.aggregate.requests)["cpu_us_per_request"]
    return "-" if cpu is None else f"{cpu / 1000:.3f} ms"


def compare(ours: Step, peers: dict[str, Step]) -> None:
    """c50k's throughput and p99 beside each peer's, and the target against the first."""
    p99 = ours.aggregate.latency.percentile(99) / 1000
    for name, theirs in peers.items():
        ratio = ours.throughput / theirs.throughput if theirs.throughput else 0.0
        their_p99 = theirs.aggregate.latency.percentile(99) / 1000
        ours.figures[f"c50k / {name}"] = (
            f"{ratio:.2f}x throughput; p99 {p99:.1f} ms vs {their_p99:.1f} ms"
        )
        if name == next(iter(PEERS)):
            ours.check(
                f"reads at >= {TARGET_RATIO}x the {name} peer (target)",
                ratio >= TARGET_RATIO,
                f"{ours.throughput:,.0f} vs {theirs.throughput:,.0f} rps ({ratio:.2f}x)",
            )


class DbRun:
    """The steps of one `db` run: each target started on its own, measured, stopped."""

    def __init__(self, ctx: Context, result: ScenarioResult, metrics_port: int) -> None:
        self.ctx = ctx
        self.result = result
        self.metrics_port = metrics_port
        self.connections = ctx.connections or 128
        self.workers = ctx.machine.cpus

    async def load(
        self, target: Target, label: str, paths: list[str], service: dict[str, str] | None = None
    ) -> Step:
        ctx = self.ctx
        warm = wrk_loads(
            target, ctx.addresses, WARM_UP_CONNECTIONS, paths,
            duration=WARM_UP_SECONDS, timeout=WRK_TIMEOUT_SECONDS,
        )  # fmt: skip
        await measure(ctx, target, "warm-up", warm)
        loads = wrk_loads(
            target, ctx.addresses, self.connections, paths,
            duration=ctx.duration_seconds, timeout=WRK_TIMEOUT_SECONDS,
        )  # fmt: skip
        label = f"{label}, {self.connections} connections"
        step = await measure(ctx, target, label, loads, service=service)
        common_checks(step, want_no_errors=True)
        step.figures["CPU per request"] = cpu_per_request(step)
        return step

    async def c50k(self, label: str, paths: list[str], env: dict[str, str]) -> Step:
        async def use(target: Target) -> list[Step]:
            await asyncio.sleep(1.0)  # Every worker has published its start-up counts.
            before = await asyncio.to_thread(scrape, self.metrics_port)
            step = await self.load(target, label, paths, service=env)
            await asyncio.sleep(1.0)
            figures = store_figures(before, await asyncio.to_thread(scrape, self.metrics_port))
            served = figures["primary"] + figures["replica"]
            step.figures |= {
                "reads served by replicas": f"{figures['replica']:.0f} of {served:.0f} "
                f"({100 * figures['replica'] / served if served else 0:.1f}%)",
                "pool checkouts": f"{figures['checkouts']:.0f}",
                "mean pool wait": f"{figures['wait_mean_ms']:.3f} ms",
                "pool wait p99 (bucket)": f"{figures['wait_p99_ms']:g} ms",
            }
            if label.startswith(WITH_REPLICAS):
                step.check(
                    "replicas serve reads",
                    figures["replica"] > 0,
                    f"{figures['replica']:.0f} replica reads, {figures['primary']:.0f} primary",
                )
            return [step]

        start = partial(
            start_c50k, self.ctx.step_dir("c50k", label.replace(" ", "-")), free_port(),
            self.ctx.addresses, self.workers, env,
        )  # fmt: skip
        return self._add(await with_target(start, use))

    async def peer(self, name: str, label: str, dsn: str, paths: list[str]) -> Step:
        async def use(target: Target) -> list[Step]:
            target.name = name
            return [await self.load(target, label, paths)]

        start = partial(
            start_asyncpg_peer, self.ctx.step_dir(name, label.replace(" ", "-")), free_port(),
            self.ctx.addresses, dsn, baselines_dir=self.ctx.baselines_dir, workers=self.workers,
            env=PEERS[name],
        )  # fmt: skip
        return self._add(await with_target(start, use))

    def _add(self, steps: list[Step]) -> Step:
        self.result.steps += steps
        return steps[0]


async def db(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        "db",
        {
            "connections": ctx.connections or 128,
            "duration_seconds": ctx.duration_seconds,
            "shards": 1,
            "replicas_per_shard": 1,
            "workers": ctx.machine.cpus,
            "write_share_of_mixed_step": 1 / WRITE_EVERY,
            "items": ITEMS,
            "cache": "off",
        },
    )
    if "c50k" not in ctx.targets:
        return result  # The baselines have no database tier to compare.
    reads = [f"/items/{i}" for i in range(1, ITEMS + 1)]
    stack = temporary_stack(StackPlan(shards=1, replicas=1))
    state = await asyncio.to_thread(stack.__enter__)
    try:
        settings = stack_postgres_settings(state)
        await seed(settings, ITEMS)
        run = DbRun(ctx, result, free_port())
        env = {
            "C50K_SETTINGS_FILE": str(state.settings_path.resolve()),
            "C50K_CACHE_ENABLED": "false",
            "C50K_UPSTREAM_URL": "",
            "C50K_METRICS_PORT": str(run.metrics_port),
            "C50K_METRICS_FLUSH_INTERVAL_SECONDS": "0.5",
            "C50K_SERVER_DRAIN_SECONDS": "0",
            "C50K_LOG_LEVEL": "warning",
        }
        shard = settings.shards[0]
        # The same shard without its replica (the environment overrides the settings file).
        primary_only = orjson.dumps([{"primary": shard.primary, "replicas": []}]).decode()
        variants = [
            (PRIMARIES_ONLY, shard.primary, {**env, "C50K_POSTGRES_SHARDS": primary_only}),
            (WITH_REPLICAS, shard.replicas[0], env),
        ]
        for variant, dsn, variant_env in variants:
            label = f"{variant}, reads"
            ours = await run.c50k(label, reads, variant_env)
            compare(ours, {name: await run.peer(name, label, dsn, reads) for name in PEERS})
        await run.c50k(f"{WITH_REPLICAS}, 10% writes", mixed_paths(), env)
    finally:
        await asyncio.to_thread(stack.__exit__, None, None, None)
    return result
