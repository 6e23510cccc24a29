"""How each scenario sets up the systems under test, the same way for every target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from urllib.parse import urlsplit

import orjson

from c50k.bench.advisor import workers_to_hold
from c50k.bench.edge_targets import EDGE_TARGETS, start_edge
from c50k.bench.runner import Context, Step, with_target
from c50k.bench.targets import (
    Target,
    posts_template,
    start_c50k,
    start_ceiling,
    start_naive,
    start_straightforward,
)
from c50k.items.demo import demo_post
from c50k.stack.process import free_port

BASELINES = ("naive", "straightforward", "ceiling")
ALL_TARGETS = ("c50k", *BASELINES)
# c50k with other settings, for side-by-side costs in one run (not in the default targets):
# `c50k bench hot --targets c50k,c50k-bare,c50k-access-log` measures what observability costs.
VARIANTS: dict[str, dict[str, str]] = {
    # Metrics, request ids and the access log all off (logs stay JSON, but a request writes none).
    "c50k-bare": {
        "C50K_METRICS_ENABLED": "false",
        "C50K_LOG_REQUEST_ID": "false",
        "C50K_SERVER_ACCESS_LOG": "false",
    },
    # The defaults plus one JSON access line per request.
    "c50k-access-log": {"C50K_SERVER_ACCESS_LOG": "true", "C50K_LOG_LEVEL": "info"},
}


def hot_paths(count: int = 100, first: int = 1) -> list[str]:
    return [f"/items/{i}" for i in range(first, first + count)]


def aggregate_body(item_id: int) -> bytes:
    """What c50k answers for GET /items/{id} when both posts come from the mock upstream."""
    return orjson.dumps(
        {
            "main_item": orjson.Fragment(orjson.dumps(demo_post(item_id))),
            "related_item": orjson.Fragment(orjson.dumps(demo_post(item_id + 1))),
        }
    )


def equal_length_ids(candidates: range, minimum: int = 16) -> list[int]:
    """Ids whose aggregate answers all have one length, so that the body bytes a generator
    counts prove every answer was a whole item pair and none an error object."""
    by_length: dict[int, list[int]] = {}
    for item_id in candidates:
        by_length.setdefault(len(aggregate_body(item_id)), []).append(item_id)
    ids = max(by_length.values(), key=len)
    if len(ids) < minimum:
        raise ValueError(f"only {len(ids)} ids share one answer length in {candidates}")
    return ids


def c50k_env(ctx: Context, upstream: Target, **overrides: str) -> dict[str, str]:
    """c50k's settings in the benchmarks: its defaults, except what a run cannot do without
    (the port and worker count are flags; each override here and in a scenario is listed with
    its reason in BENCHMARKS.md)."""
    return {
        # The mock upstream the run starts, and a SQLite file of the run's own.
        "C50K_UPSTREAM_URL": posts_template(upstream),
        "C50K_STORE_SQLITE_PATH": str(ctx.workdir / "c50k.sqlite3"),
        # The harness stops a target after its last step, with no balancer to drain from:
        # 3 s of drain per stop would only lengthen the run.
        "C50K_SERVER_DRAIN_SECONDS": "0",
        # Its own exporter port: another c50k on this machine may hold the default.
        "C50K_METRICS_PORT": str(free_port()),
        **overrides,
    }


def start_target(
    ctx: Context,
    name: str,
    workers: int,
    upstream: Target,
    *,
    env: Mapping[str, str],
    ceiling_body: bytes,
) -> Target:
    if name == "external":
        if ctx.external_url is None:
            raise ValueError("the external target needs --target URL")
        url = urlsplit(ctx.external_url.split(",")[0])
        host, port = url.hostname or "127.0.0.1", url.port or 80
        return Target("external", f"http://{host}:{port}", port, list(ctx.addresses), [])
    port = free_port()
    workdir = ctx.step_dir(name)
    if name == "c50k":
        return start_c50k(workdir, port, ctx.addresses, workers, env)
    if name in VARIANTS:
        target = start_c50k(workdir, port, ctx.addresses, workers, {**env, **VARIANTS[name]})
        target.name = name
        return target
    if name in ("naive", "straightforward"):
        start_baseline = start_naive if name == "naive" else start_straightforward
        return start_baseline(
            workdir,
            port,
            ctx.addresses,
            posts_template(upstream),
            baselines_dir=ctx.baselines_dir,
            workers=workers,
        )
    if name == "ceiling":
        return start_ceiling(workdir, port, ctx.addresses, ceiling_body, workers)
    if name in EDGE_TARGETS:
        connections = ctx.connections or 50_000
        return start_edge(
            name, workdir, port, ctx.addresses, workers=workers, env=env, connections=connections
        )
    raise ValueError(f"unknown target {name!r}")


Use = Callable[[Target, str], Awaitable[list[Step]]]


async def each_target(
    ctx: Context,
    upstream: Target,
    *,
    env: Mapping[str, str],
    ceiling_body: bytes,
    workers: Callable[[str], int],
    use: Use,
) -> list[Step]:
    """Start each selected target in turn with the same settings, let `use` measure it (it gets
    the target and its name), and stop it, whatever happened."""
    steps: list[Step] = []
    for name in ctx.targets:
        start = partial(
            start_target, ctx, name, workers(name), upstream, env=env, ceiling_body=ceiling_body
        )

        async def measured(target: Target, name: str = name) -> list[Step]:
            return await use(target, name)

        steps += await with_target(start, measured)
    return steps


def default_workers(ctx: Context, name: str) -> int:
    # The tutorial rule for the naive baseline; one per core for everyone else.
    return 2 * ctx.machine.cpus + 1 if name == "naive" else ctx.machine.cpus


# A storm of connects lands unevenly on workers: at 4 workers for 50,000 connections (1.6x
# headroom) one worker passed its 19,488-connection budget; 2x headroom held.


def workers_for_connections(ctx: Context, connections: int, per_worker: int) -> int:
    """Enough workers to hold `connections`, with headroom for their uneven spread."""
    return workers_to_hold(connections, per_worker, ctx.machine.cpus)
