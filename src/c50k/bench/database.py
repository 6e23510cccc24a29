"""The `db` scenario: the data tier alone. Cache off, no upstream, 2 shards each a primary and
a streaming replica (started by the stack's own code), reads with a 10% write mix.

What it reports beyond the load generators comes from c50k's own metrics exporter, scraped
before and after the step: how many reads each role (primary, replica) served, and how long
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
from c50k.bench.targets import Target, start_c50k
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


async def db(ctx: Context) -> ScenarioResult:
    connections = ctx.connections or 128
    workers = ctx.machine.cpus
    result = ScenarioResult(
        "db",
        {
            "connections": connections,
            "duration_seconds": ctx.duration_seconds,
            "shards": 2,
            "replicas_per_shard": 1,
            "write_share": 1 / WRITE_EVERY,
            "items": ITEMS,
            "cache": "off",
        },
    )
    if "c50k" not in ctx.targets:
        return result  # The baselines have no database tier to compare.
    paths = mixed_paths()
    stack = temporary_stack(StackPlan(shards=2, replicas=1))
    state = await asyncio.to_thread(stack.__enter__)
    try:
        settings = stack_postgres_settings(state)
        await seed(settings, ITEMS)
        metrics_port = free_port()
        env = {
            "C50K_SETTINGS_FILE": str(state.settings_path.resolve()),
            "C50K_CACHE_ENABLED": "false",
            "C50K_UPSTREAM_URL": "",
            "C50K_METRICS_PORT": str(metrics_port),
            "C50K_METRICS_FLUSH_INTERVAL_SECONDS": "0.5",
            "C50K_SERVER_DRAIN_SECONDS": "0",
            "C50K_LOG_LEVEL": "warning",
        }

        async def use(target: Target, variant: str, env: dict[str, str]) -> list[Step]:
            warm = wrk_loads(
                target, ctx.addresses, WARM_UP_CONNECTIONS, paths,
                duration=WARM_UP_SECONDS, timeout=WRK_TIMEOUT_SECONDS,
            )  # fmt: skip
            await measure(ctx, target, "warm-up", warm)
            await asyncio.sleep(1.0)  # Every worker has published the warm-up's counts.
            before = await asyncio.to_thread(scrape, metrics_port)
            loads = wrk_loads(
                target, ctx.addresses, connections, paths,
                duration=ctx.duration_seconds, timeout=WRK_TIMEOUT_SECONDS,
            )  # fmt: skip
            step = await measure(
                ctx, target, f"{variant}, {connections} connections", loads, service=env
            )
            await asyncio.sleep(1.0)
            figures = store_figures(before, await asyncio.to_thread(scrape, metrics_port))
            reads = figures["primary"] + figures["replica"]
            step.figures = {
                "reads served by replicas": f"{figures['replica']:.0f} of {reads:.0f} "
                f"({100 * figures['replica'] / reads if reads else 0:.1f}%)",
                "reads served by primaries": f"{figures['primary']:.0f}",
                "pool checkouts": f"{figures['checkouts']:.0f}",
                "mean pool wait": f"{figures['wait_mean_ms']:.3f} ms",
            }
            step.figures["pool wait p99 (bucket)"] = f"{figures['wait_p99_ms']:g} ms"
            common_checks(step, want_no_errors=True)
            if variant == WITH_REPLICAS:
                step.check(
                    "replicas serve reads",
                    figures["replica"] > 0,
                    f"{figures['replica']:.0f} replica reads, {figures['primary']:.0f} primary",
                )
            return [step]

        # The same shards without their replicas (the environment overrides the settings
        # file): what reading from replicas changes, side by side in one run.
        primaries_only = orjson.dumps(
            [{"primary": shard.primary, "replicas": []} for shard in settings.shards]
        ).decode()
        variants = [
            (WITH_REPLICAS, env),
            (PRIMARIES_ONLY, {**env, "C50K_POSTGRES_SHARDS": primaries_only}),
        ]
        for variant, variant_env in variants:
            start = partial(
                start_c50k, ctx.step_dir("c50k", variant.replace(" ", "-")), free_port(),
                ctx.addresses, workers, variant_env,
            )  # fmt: skip
            result.steps += await with_target(start, partial(use, variant=variant, env=variant_env))
    finally:
        await asyncio.to_thread(stack.__exit__, None, None, None)
    return result
