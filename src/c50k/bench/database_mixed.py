"""The `db-mixed` scenario: 50,000 connections on the PostgreSQL store, a hot set answered from
the cache and 5% of the connections on cold ids, each read once, that go to the database.

The hot part is the `c50k` scenario's load (h2load, opened in waves); the cold part is one wrk
process that starts once every wave is in, over ids no request asked for before, so each of its
reads reaches PostgreSQL. Its latency is reported on its own: what a cache miss costs while
50,000 connections are held. The cold ids come in pairs (GET /items/N reads N and N + 1), and
there are more of them than a run asks for, so no cold read is ever served from the cache.
"""

from __future__ import annotations

import asyncio
import math
from functools import partial

import asyncpg
import orjson

from c50k.bench.database import scrape
from c50k.bench.results import Aggregate
from c50k.bench.runner import (
    CLIENTS_PER_THREAD,
    CONNECTIONS_PER_WAVE,
    Context,
    Step,
    h2load_loads,
    measure,
    with_target,
    wrk_loads,
)
from c50k.bench.scenarios import ScenarioResult, common_checks
from c50k.bench.targets import Target, start_c50k
from c50k.bench.targets_setup import workers_for_connections
from c50k.bench.wrk import WrkOptions
from c50k.items.demo import demo_post
from c50k.settings import CacheSettings, UpstreamSettings, connection_budget_for
from c50k.stack.postgres import stack_postgres_settings
from c50k.stack.process import free_port
from c50k.stack.stack import StackPlan, temporary_stack

HOT_IDS = 64
COLD_SHARE = 0.05
# Cold requests (pairs of ids). A run of 60 s at 50,000 connections makes about a thousand a
# second; a run that asks for more than this many is flagged, since a repeat could be cached.
COLD_REQUESTS = 120_000
COLD_FIRST_ID = 1_000_001
# With 50,000 busy connections a worker's event loop takes seconds for one turn (Little's
# law: 50,000 / ~20,000 rps = 2.5 s), and a read that misses the cache needs several turns
# (its query out, the answer in, the connection back): seconds more than a hit. The default
# request deadline (3 s), pool timeout (2 s) and statement_timeout (2 s, which PostgreSQL
# counts while a statement waits for the client: its prepare answered, or its rows read)
# would cut most of them short, as the burst scenario's would its 1 s upstream; this run lifts
# them and reports what a miss costs.
MISS_LIMITS = {
    "C50K_REQUEST_DEADLINE_SECONDS": "60",
    "C50K_POSTGRES_POOL_TIMEOUT_SECONDS": "30",
    "C50K_POSTGRES_STATEMENT_TIMEOUT_SECONDS": "30",
}
COLD_TIMEOUT_SECONDS = 60  # wrk's own limit: longer than the deadline.


def cold_paths(count: int = COLD_REQUESTS, first: int = COLD_FIRST_ID) -> list[str]:
    """GET /items/N for N = first, first + 2, ...: both N and N + 1 are read once each."""
    return [f"/items/{first + 2 * i}" for i in range(count)]


async def seed_items(dsn: str, ids: list[int]) -> None:
    """The items straight into the primary with COPY: 240,000 rows in seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        records = [(i, orjson.dumps(demo_post(i)).decode()) for i in ids]
        await conn.copy_records_to_table("items", records=records, columns=["id", "body"])
    finally:
        await conn.close()


def split(step: Step) -> tuple[Aggregate, Aggregate]:
    """(hot, cold): the h2load processes and the cold wrk process of the step."""
    hot = Aggregate([run for run in step.aggregate.runs if run.tool == "h2load"])
    cold = Aggregate([run for run in step.aggregate.runs if run.tool == "wrk"])
    return hot, cold


def cold_checks(step: Step, store_reads: float, workers: int) -> None:
    """Each answer as it should be, and each cold read, only they, from the database."""
    hot, cold = split(step)
    served = hot.connections_served
    step.check(
        "every hot connection served",
        served == hot.connections,
        f"{served} of {hot.connections} connections got an answer",
    )
    step.check(
        "cold reads answered whole (wrk saw every body)",
        cold.requests > 0 and cold.error_bodies == 0,
        f"{cold.requests} cold answers, {cold.error_bodies} with an error object",
    )
    step.check(
        "no cold id read twice",
        cold.requests <= COLD_REQUESTS,
        f"{cold.requests} cold requests over {COLD_REQUESTS} pairs of ids",
    )
    # Both sides of every cold request reach the store, and so do the ones still in flight
    # when wrk stopped. Each worker reloads each hot id once a cache TTL (ahead of expiry, in
    # the background) and once more if the warm-up missed it; any hot answer beyond that from
    # the store would break the bound.
    reloads = math.ceil(step.aggregate.duration_seconds / CacheSettings().ttl_seconds) + 1
    most = 2 * (cold.requests + cold.connections) + (HOT_IDS + 1) * workers * reloads
    step.check(
        "hot answers from the cache, cold ones from the database",
        2 * cold.requests <= store_reads <= most,
        f"{store_reads:.0f} store reads for {cold.requests} cold requests",
    )
    total = hot.throughput + cold.throughput
    p50, p99 = (cold.latency.percentile(p) / 1000 for p in (50, 99))
    step.figures |= {
        "cold share of requests": f"{100 * cold.throughput / total if total else 0:.1f}%",
        "cold reads": f"{cold.throughput:,.0f} rps, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        "hot reads": f"{hot.throughput:,.0f} rps, p99 {hot.latency.percentile(99) / 1000:.1f} ms",
    }


async def db_mixed(ctx: Context, duration: int = 60) -> ScenarioResult:
    connections = ctx.connections or 50_000
    cold_connections = max(1, round(connections * COLD_SHARE))
    budget = connection_budget_for(ctx.machine.nofile_soft, UpstreamSettings().max_connections)
    workers = workers_for_connections(ctx, connections, budget)
    hot = [f"/items/{i}" for i in range(1, HOT_IDS + 1)]
    result = ScenarioResult(
        "db-mixed",
        {
            "connections": connections,
            "cold_connections": cold_connections,
            "duration_seconds": duration,
            "workers": workers,
            "hot_ids": HOT_IDS,
            "cold_requests_available": COLD_REQUESTS,
            "shards": 1,
        },
    )
    if "c50k" not in ctx.targets:
        return result  # The baselines have no database tier.
    stack = temporary_stack(StackPlan(shards=1, replicas=0))
    state = await asyncio.to_thread(stack.__enter__)
    try:
        primary = stack_postgres_settings(state).shards[0].primary
        cold_ids = range(COLD_FIRST_ID, COLD_FIRST_ID + 2 * COLD_REQUESTS + 1)
        await seed_items(primary, [*range(1, HOT_IDS + 2), *cold_ids])
        metrics_port = free_port()
        env = {
            "C50K_SETTINGS_FILE": str(state.settings_path.resolve()),
            "C50K_UPSTREAM_URL": "",
            "C50K_METRICS_PORT": str(metrics_port),
            "C50K_METRICS_FLUSH_INTERVAL_SECONDS": "0.5",
            "C50K_SERVER_DRAIN_SECONDS": "0",
            "C50K_LOG_LEVEL": "warning",
            **MISS_LIMITS,
        }

        async def use(target: Target) -> list[Step]:
            # Every worker caches every hot id, and wrk's Lua hook sees every body.
            warm = wrk_loads(target, ctx.addresses, 256, hot, duration=3, timeout=10)
            warm_step = await measure(ctx, target, "warm-up", warm)
            common_checks(warm_step, want_no_errors=True)
            hot_loads = h2load_loads(
                target,
                ctx.addresses,
                connections - cold_connections,
                hot,
                ctx.step_dir("c50k", "h2load"),
                duration_seconds=duration,
                per_process=CONNECTIONS_PER_WAVE,
                per_thread=CLIENTS_PER_THREAD,
            )
            # The cold generator starts after the last wave (one a second), ends with the first.
            after_waves = len(hot_loads)
            cold = WrkOptions(
                url=f"http://{ctx.addresses[-1]}:{target.port}/",
                connections=cold_connections,
                threads=1,  # One thread walks the ids in order: none is asked for twice.
                duration_seconds=max(1, duration - after_waves),
                timeout_seconds=COLD_TIMEOUT_SECONDS,
                paths=cold_paths(),
            )
            await asyncio.sleep(1.0)  # Every worker has published the warm-up's counts.
            before = await asyncio.to_thread(scrape, metrics_port)
            step = await measure(
                ctx,
                target,
                f"{connections} connections, {cold_connections} of them cold",
                [*hot_loads, cold],
                service=env,
                stagger_seconds=1.0,
            )
            await asyncio.sleep(1.0)
            after = await asyncio.to_thread(scrape, metrics_port)
            reads = sum(
                v - before.get(k, 0.0)
                for k, v in after.items()
                if k.startswith("c50k_store_reads_total")
            )
            common_checks(step, want_no_errors=True)
            cold_checks(step, reads, workers)
            return [step]

        start = partial(start_c50k, ctx.step_dir("c50k"), free_port(), ctx.addresses, workers, env)
        result.steps += await with_target(start, use)
    finally:
        await asyncio.to_thread(stack.__exit__, None, None, None)
    return result
