"""The closed-loop scenarios: hot (cached reads) and fanout (every read reaches the upstream).

Each runs c50k and the baselines in turn, in the same invocation, under the same load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from c50k.bench.runner import Context, Step, measure, wrk_loads
from c50k.bench.targets import Target, mock_upstream
from c50k.bench.targets_setup import (
    aggregate_body,
    c50k_env,
    default_workers,
    each_target,
    hot_paths,
)

WRK_TIMEOUT_SECONDS = 10
WARM_UP_SECONDS = 2
WARM_UP_CONNECTIONS = 32


@dataclass
class ScenarioResult:
    name: str
    settings: dict[str, Any]
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """c50k's verdict: a baseline failing its checks is a finding about the baseline
        (shown in the report), not a failure of the run."""
        ours = [s for s in self.steps if s.target == "external" or s.target.startswith("c50k")]
        return bool(ours) and all(step.passed for step in ours)


def common_checks(step: Step, *, want_no_errors: bool) -> None:
    summary = step.aggregate.summary()
    errors = sum(summary["socket_errors"].values())
    bodies = summary["error_bodies"]
    step.check("answers", step.aggregate.requests > 0, f"{step.aggregate.requests} responses")
    if want_no_errors:
        step.check("no socket errors", errors == 0, f"{summary['socket_errors']}")
        step.check("no non-2xx", summary["non_2xx"] == 0, f"{summary['status']}")
        if bodies is not None:
            step.check("no error objects in bodies", bodies == 0, f"{bodies} bodies with error")


def refresh_bound(ctx: Context, ids: int, workers: int, seconds: float) -> int:
    """Upstream calls a step may see while every answer comes from the cache: at the default
    TTL, each worker reloads each hot id in the background once per refresh period (half the
    TTL), plus once at each end of the step."""
    cache = ctx.settings.cache
    period = cache.ttl_seconds * cache.refresh_ahead
    return ids * workers * (math.ceil(seconds / period) + 2)


def served_from_cache(ctx: Context, ids: int, workers: int) -> Callable[[Step], None]:
    """The check that a step's answers came from the cache: the upstream saw no more than the
    background refreshes (which no answer waits for)."""

    def check(step: Step) -> None:
        bound = refresh_bound(ctx, ids, workers, step.aggregate.duration_seconds)
        step.check(
            "served from cache (upstream: background refreshes only)",
            step.upstream_requests is not None and step.upstream_requests <= bound,
            f"{step.upstream_requests} upstream requests during the step, bound {bound}",
        )

    return check


async def wrk_step(
    ctx: Context,
    target: Target,
    upstream: Target,
    paths: list[str],
    *,
    connections: int,
    label: str,
    service: dict[str, str] | None = None,
    seconds: int | None = None,
) -> Step:
    """One closed-loop wrk step over `paths` (the scenario's duration unless `seconds`)."""
    loads = wrk_loads(
        target,
        ctx.addresses,
        connections,
        paths,
        duration=seconds or ctx.duration_seconds,
        timeout=WRK_TIMEOUT_SECONDS,
    )
    return await measure(ctx, target, label, loads, upstream=upstream, service=service)


async def warm_up(
    ctx: Context, target: Target, upstream: Target, paths: list[str], label: str = "warm-up"
) -> Step:
    """A short step that puts every path in the target's caches."""
    return await wrk_step(
        ctx,
        target,
        upstream,
        paths,
        connections=WARM_UP_CONNECTIONS,
        label=label,
        seconds=WARM_UP_SECONDS,
    )


async def warm_then_levels(
    ctx: Context,
    target: Target,
    upstream: Target,
    paths: list[str],
    levels: list[int],
    *,
    service: dict[str, str],
) -> list[Step]:
    """A short warm-up (every path cached), then one wrk step per connection level."""
    await warm_up(ctx, target, upstream, paths)
    return [
        await wrk_step(
            ctx, target, upstream, paths, connections=n, label=f"{n} connections", service=service
        )
        for n in levels
    ]


async def closed_loop(
    ctx: Context,
    result: ScenarioResult,
    upstream: Target,
    *,
    levels: list[int],
    paths: list[str],
    env: dict[str, str],
    check: Callable[[Step], None],
) -> None:
    """Every selected target, warmed, then measured at each connection level."""
    body = aggregate_body(int(paths[0].rsplit("/", 1)[1]))

    async def use(target: Target, name: str) -> list[Step]:
        steps = await warm_then_levels(
            ctx, target, upstream, paths, levels, service=env if name == "c50k" else {}
        )
        for step in steps:
            common_checks(step, want_no_errors=name != "naive")
            if name == "c50k":
                check(step)
        return steps

    result.steps += await each_target(
        ctx, upstream, env=env, ceiling_body=body, workers=partial(default_workers, ctx), use=use
    )


async def hot(ctx: Context, levels: list[int] | None = None) -> ScenarioResult:
    """Cached reads: a hot set of 100 ids, all in every worker's cache after the warm-up."""
    levels = levels or ([ctx.connections] if ctx.connections else [64, 256, 1024])
    paths = hot_paths(100)
    with mock_upstream(ctx.step_dir("upstream")) as upstream:
        env = c50k_env(ctx, upstream)
        result = ScenarioResult(
            "hot", {"levels": levels, "paths": len(paths), "duration_seconds": ctx.duration_seconds}
        )

        # The related items too: ids 1 to 101.
        check = served_from_cache(ctx, len(paths) + 1, default_workers(ctx, "c50k"))
        await closed_loop(ctx, result, upstream, levels=levels, paths=paths, env=env, check=check)
        return result


async def fanout(ctx: Context, latencies_ms: list[float] | None = None) -> ScenarioResult:
    """Cache off: every request makes two upstream calls (the seed's own workload)."""
    latencies_ms = latencies_ms if latencies_ms is not None else [0.0, 20.0]
    connections = ctx.connections or 256
    result = ScenarioResult(
        "fanout",
        {
            "latencies_ms": latencies_ms,
            "connections": connections,
            "duration_seconds": ctx.duration_seconds,
            "store": "memory (empty): the fan-out path alone",
        },
    )
    for latency in latencies_ms:
        with mock_upstream(ctx.step_dir(f"upstream-{latency:g}ms"), latency_ms=latency) as upstream:
            env = c50k_env(ctx, upstream, C50K_CACHE_ENABLED="false", C50K_STORE_BACKEND="memory")

            def two_calls_each(step: Step) -> None:
                calls, answers = step.upstream_requests or 0, step.aggregate.requests
                # Exact but for requests in flight at the step's edges: the warm-up's last
                # ones call the upstream after the step's first count, the step's last ones
                # call it without an answer being counted.
                slack = 2 * (WARM_UP_CONNECTIONS + step.connections)
                step.check(
                    "two upstream calls per answer",
                    answers > 0 and abs(calls - 2 * answers) <= slack,
                    f"{calls} calls for {answers} answers (in-flight slack {slack})",
                )

            before = len(result.steps)
            await closed_loop(
                ctx,
                result,
                upstream,
                levels=[connections],
                paths=hot_paths(100),
                env=env,
                check=two_calls_each,
            )
            for step in result.steps[before:]:
                step.label = f"{latency:g} ms upstream"
    return result
