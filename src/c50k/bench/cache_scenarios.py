"""The cache tier's scenarios, each with a redis-server of its own (the stack's code):

- `hot-redis`: cached reads with the in-process layer alone, in front of Redis, and Redis
  alone (every read a Redis round trip), side by side in one run;
- `stampede`: thousands of connections opened at once on one cold id, the upstream slow, with
  each worker's single-flight alone and with the Redis lease: upstream calls per key.

They compare configurations of c50k, so they start no baselines.
"""

from __future__ import annotations

import asyncio
import statistics
from functools import partial

from c50k.bench.runner import Context, Step, h2load_loads, measure, with_target
from c50k.bench.scenarios import (
    ScenarioResult,
    common_checks,
    served_from_cache,
    warm_up,
    wrk_step,
)
from c50k.bench.stress import check_bodies
from c50k.bench.targets import Target, mock_upstream, start_c50k
from c50k.bench.targets_setup import aggregate_body, c50k_env, hot_paths, start_target
from c50k.stack.process import free_port
from c50k.stack.redis import running_redis

IN_PROCESS, BOTH, REDIS_ONLY = "in-process only", "in-process + redis", "redis only"


def _variants(redis_url: str) -> dict[str, dict[str, str]]:
    return {
        IN_PROCESS: {},
        BOTH: {"C50K_REDIS_URL": redis_url},
        REDIS_ONLY: {"C50K_REDIS_URL": redis_url, "C50K_REDIS_LOCAL": "false"},
    }


def _label(variant: str, connections: int) -> str:
    return f"{variant}, {connections} connections"


def _median_rps(steps: list[Step], label: str) -> float | None:
    rounds = [s.throughput for s in steps if s.label.startswith(f"{label}, round ")]
    return statistics.median(rounds) if rounds else None


def _note_ratio(ctx: Context, steps: list[Step], ours: str, theirs: str) -> None:
    mine, other = _median_rps(steps, ours), _median_rps(steps, theirs)
    if mine is not None and other:
        ctx.notes.append(
            f"median throughput {ours} / {theirs} = {mine:,.0f} / {other:,.0f} rps "
            f"= {mine / other:.2f}x"
        )


async def hot_redis(ctx: Context, rounds: int = 3) -> ScenarioResult:
    """Cached reads of 100 ids through each cache configuration. The three run at once and
    are measured in turn, round after round, so that a noisy machine weighs on all alike;
    the ratios compare medians over the rounds."""
    levels = [ctx.connections] if ctx.connections else [64, 256]
    paths = hot_paths(100)
    result = ScenarioResult(
        "hot-redis",
        {
            "levels": levels,
            "paths": len(paths),
            "rounds": rounds,
            "duration_seconds": ctx.duration_seconds,
        },
    )
    targets: dict[str, Target] = {}
    envs: dict[str, dict[str, str]] = {}
    with (
        mock_upstream(ctx.step_dir("upstream")) as upstream,
        running_redis(ctx.step_dir("redis")) as redis,
    ):
        try:
            for variant, extra in _variants(redis.url).items():
                envs[variant] = c50k_env(ctx, upstream, **extra)
                targets[variant] = await asyncio.to_thread(
                    start_c50k,
                    ctx.step_dir(variant.replace(" ", "-")),
                    free_port(),
                    ctx.addresses,
                    ctx.machine.cpus,
                    envs[variant],
                )
            for variant, target in targets.items():
                await warm_up(ctx, target, upstream, paths, f"{variant}, warm-up")
            for round_number in range(1, rounds + 1):
                for connections in levels:
                    for variant, target in targets.items():
                        label = f"{_label(variant, connections)}, round {round_number}"
                        step = await wrk_step(
                            ctx,
                            target,
                            upstream,
                            paths,
                            connections=connections,
                            label=label,
                            service=envs[variant],
                        )
                        common_checks(step, want_no_errors=True)
                        # A Redis command that times out (a saturated machine) sends that read
                        # to the sources: fail-open, visible here.
                        served_from_cache(ctx, len(paths) + 1, ctx.machine.cpus)(step)
                        result.steps.append(step)
        finally:
            for target in targets.values():
                await asyncio.to_thread(target.stop)
    for connections in levels:
        _note_ratio(ctx, result.steps, _label(BOTH, connections), _label(REDIS_ONLY, connections))
        _note_ratio(ctx, result.steps, _label(IN_PROCESS, connections), _label(BOTH, connections))
    return result


async def stampede(ctx: Context, latency_ms: float = 200) -> ScenarioResult:
    """Connections opened at once, one GET each of the same cold id, 2 workers per core."""
    connections = ctx.connections or 2000
    workers = 2 * ctx.machine.cpus  # More workers, more per-worker loads without Redis.
    result = ScenarioResult(
        "stampede",
        {"connections": connections, "upstream_latency_ms": latency_ms, "workers": workers},
    )
    with (
        mock_upstream(ctx.step_dir("upstream"), latency_ms=latency_ms, posts=100_000) as upstream,
        running_redis(ctx.step_dir("redis")) as redis,
    ):
        # The generator, 4 workers and Redis share the cores: the burst stalls each event
        # loop, and Redis itself, past the default 50 ms command timeout, which sends the
        # misses to the sources (fail-open). The last variant shows the lease with
        # timeouts that outlast those stalls.
        variants = {
            "single-flight per worker": {},
            "redis lease, default timeouts": {"C50K_REDIS_URL": redis.url},
            "redis lease, 500 ms timeouts": {
                "C50K_REDIS_URL": redis.url,
                "C50K_REDIS_SOCKET_TIMEOUT_SECONDS": "0.5",
                "C50K_REDIS_CONNECT_TIMEOUT_SECONDS": "0.5",
            },
        }
        for number, (label, extra) in enumerate(variants.items()):
            cold = 5001 + 2 * number  # Never asked before: a cold id per variant.
            env = c50k_env(ctx, upstream, **extra)
            exact = "C50K_REDIS_SOCKET_TIMEOUT_SECONDS" in extra

            async def use(
                target: Target,
                label: str = label,
                env: dict[str, str] = env,
                cold: int = cold,
                exact: bool = exact,
            ) -> list[Step]:
                loads = h2load_loads(
                    target,
                    ctx.addresses,
                    connections,
                    [f"/items/{cold}"],
                    ctx.step_dir(label.replace(" ", "-"), "h2load"),
                    requests_per_client=1,
                    max_seconds=60.0,
                    active_timeout_seconds=45.0,
                )
                step = await measure(ctx, target, label, loads, upstream=upstream, service=env)
                common_checks(step, want_no_errors=True)
                check_bodies(step, len(aggregate_body(cold)))
                calls = step.upstream_requests or 0
                # Two keys per request: the id and its related id.
                if exact:
                    step.check("one upstream call per key", calls == 2, f"{calls} calls")
                else:
                    bound = 2 * workers
                    step.check(
                        "at most one call per key per worker", calls <= bound, f"{calls} calls"
                    )
                return [step]

            start = partial(
                start_target, ctx, "c50k", workers, upstream, env=env, ceiling_body=b"{}"
            )
            result.steps += await with_target(start, use)
    for step in result.steps:
        ctx.notes.append(f"{step.label}: {step.upstream_requests} upstream calls")
    return result
