"""The scenarios that push connections and load past what a closed loop of a few hundred does:
c50k (50,000 busy keep-alive connections), burst (50,000 opened at once) and overload
(an open-model rate at three times the measured capacity)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

from c50k.bench.h2load import latency_by_status
from c50k.bench.machine import limits_for
from c50k.bench.results import Histogram
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
from c50k.bench.scenarios import WRK_TIMEOUT_SECONDS, ScenarioResult, common_checks
from c50k.bench.targets import Target, mock_upstream
from c50k.bench.targets_setup import (
    aggregate_body,
    c50k_env,
    each_target,
    equal_length_ids,
    start_target,
    workers_for_connections,
)
from c50k.settings import connection_budget_for

RSS_TARGET_BYTES_PER_CONNECTION = 8 * 1024
# Overload: admitted requests should finish within this; it sizes the in-flight limit.
LATENCY_TARGET_SECONDS = 0.1
SHED_ANSWER_TARGET_MS = 50
ADMITTED_P99_TARGET_MS = 250


def _budget(ctx: Context) -> int:
    """c50k's per-worker connection budget at this machine's open-file limit."""
    return connection_budget_for(ctx.machine.nofile_soft, ctx.settings.upstream.max_connections)


def check_bodies(step: Step, answer_length: int) -> None:
    """Every 2xx answer had exactly the length of a whole item pair: none carried an error."""
    body_bytes = [run.body_bytes for run in step.aggregate.runs]
    if any(b is None for b in body_bytes):
        step.check("whole answers (by body bytes)", False, "a generator did not count bytes")
        return
    ok = sum(n for code, n in step.aggregate.status.items() if 200 <= code < 300)
    counted = sum(b or 0 for b in body_bytes)
    step.check(
        "whole answers (by body bytes)",
        counted == ok * answer_length,
        f"{counted} body bytes for {ok} answers of {answer_length} bytes",
    )


def _check_duration_bodies(step: Step, warm_up: Step, answer_length: int) -> None:
    """h2load cannot see bodies, and in a duration run its byte count also holds answers still
    arriving when it stops. The proof is the cache: wrk's body check saw only whole answers
    for these ids in the warm-up, and no side reached the upstream during the step, so every
    answer was one of those cached pairs."""
    clean = warm_up.aggregate.error_bodies == 0
    step.check(
        "whole answers (warm-up bodies clean, none from upstream)",
        clean and step.upstream_requests == 0,
        f"warm-up error bodies {warm_up.aggregate.error_bodies}, "
        f"upstream requests during the step {step.upstream_requests}",
    )
    ok = sum(n for code, n in step.aggregate.status.items() if 200 <= code < 300)
    counted = sum(run.body_bytes or 0 for run in step.aggregate.runs)
    step.check(
        "body bytes cover every answer",
        counted >= ok * answer_length,
        f"{counted} body bytes for {ok} answers of {answer_length} bytes",
    )


def _check_limits(ctx: Context, connections: int, workers: int, *, burst: bool) -> None:
    for limit in limits_for(
        ctx.machine,
        connections=connections,
        generator_processes=max(len(ctx.addresses), math.ceil(connections / 12_500)),
        addresses=len(ctx.addresses),
        workers=workers,
        connections_per_worker=_budget(ctx),
        backlog=4096,
        burst=burst,
    ):
        ctx.warn(limit)


async def c50k(ctx: Context, duration: int = 60) -> ScenarioResult:
    """50,000 keep-alive connections, each with a request in flight, on a hot mix of ids."""
    connections = ctx.connections or 50_000
    ids = equal_length_ids(range(1, 1001))[:64]
    paths = [f"/items/{i}" for i in ids]
    length = len(aggregate_body(ids[0]))
    workers = workers_for_connections(ctx, connections, _budget(ctx))
    _check_limits(ctx, connections, workers, burst=False)
    result = ScenarioResult(
        "c50k",
        {
            "connections": connections,
            "duration_seconds": duration,
            "workers": workers,
            "ids": len(ids),
            "answer_bytes": length,
        },
    )
    with mock_upstream(ctx.step_dir("upstream")) as upstream:
        env = c50k_env(ctx, upstream)

        async def use(target: Target, name: str) -> list[Step]:
            # Every worker caches every id, and wrk's Lua hook sees every body: whole items.
            warm = wrk_loads(
                target, ctx.addresses, 256, paths, duration=3, timeout=WRK_TIMEOUT_SECONDS
            )
            warm_step = await measure(ctx, target, "warm-up", warm, upstream=upstream)
            loads = h2load_loads(
                target,
                ctx.addresses,
                connections,
                paths,
                ctx.step_dir(name, "h2load"),
                duration_seconds=duration,
                per_process=CONNECTIONS_PER_WAVE,
                per_thread=CLIENTS_PER_THREAD,
            )
            step = await measure(
                ctx,
                target,
                f"{connections} connections",
                loads,
                upstream=upstream,
                service=env if name == "c50k" else {},
                stagger_seconds=1.0,
            )
            common_checks(step, want_no_errors=True)
            served = step.aggregate.connections_served
            step.check(
                "every connection served",
                served == connections,
                f"{served} of {connections} connections got an answer",
            )
            _check_duration_bodies(step, warm_step, length)
            if name == "c50k":
                per = step.server.rss_per_connection(connections)
                step.check(
                    "RSS per held connection <= 8 KB (target)",
                    per is not None and per <= RSS_TARGET_BYTES_PER_CONNECTION,
                    f"{(per or 0) / 1024:.2f} KB",
                )
            return [step]

        result.steps += await each_target(
            ctx,
            upstream,
            env=env,
            ceiling_body=aggregate_body(ids[0]),
            workers=lambda _name: workers,
            use=use,
        )
        return result


async def burst(ctx: Context, latency_ms: float = 1000) -> ScenarioResult:
    """50,000 connections opened at once, one request each, the upstream taking 1 s."""
    connections = ctx.connections or 50_000
    ids = equal_length_ids(range(1001, 3001))[:100]  # Cold: never asked before this run.
    paths = [f"/items/{i}" for i in ids]
    length = len(aggregate_body(ids[0]))
    workers = workers_for_connections(ctx, connections, _budget(ctx))
    _check_limits(ctx, connections, workers, burst=True)
    result = ScenarioResult(
        "burst",
        {
            "connections": connections,
            "upstream_latency_ms": latency_ms,
            "workers": workers,
            "ids": len(ids),
        },
    )
    with mock_upstream(ctx.step_dir("upstream"), latency_ms=latency_ms, posts=100_000) as upstream:
        # Parking 50,000 requests on a slow upstream is the point here: no admission limit.
        env = c50k_env(
            ctx,
            upstream,
            C50K_SERVER_MAX_IN_FLIGHT="0",
            C50K_UPSTREAM_TIMEOUT_SECONDS="30",
            C50K_REQUEST_DEADLINE_SECONDS="60",
        )

        async def use(target: Target, name: str) -> list[Step]:
            loads = h2load_loads(
                target,
                ctx.addresses,
                connections,
                paths,
                ctx.step_dir(name, "h2load"),
                requests_per_client=1,
                max_seconds=120.0,
                active_timeout_seconds=90.0,
            )
            step = await measure(
                ctx,
                target,
                f"{connections} at once",
                loads,
                upstream=upstream,
                service=env if name == "c50k" else {},
            )
            common_checks(step, want_no_errors=True)
            ok = sum(n for c, n in step.aggregate.status.items() if 200 <= c < 300)
            step.check("all answered 200", ok == connections, f"{ok} of {connections}")
            check_bodies(step, length)
            if name == "c50k":
                bound = 2 * len(ids) * workers
                step.check(
                    "single-flight held",
                    (step.upstream_requests or 0) <= bound,
                    f"{step.upstream_requests} upstream calls, bound {bound}",
                )
            return [step]

        result.steps += await each_target(
            ctx,
            upstream,
            env=env,
            ceiling_body=aggregate_body(ids[0]),
            workers=lambda _name: workers,
            use=use,
        )
        return result


def shed_latency_checks(step: Step, logs: list[Path], capacity: float) -> None:
    by_status: dict[int, Histogram] = {}
    for log in logs:
        for status, histogram in latency_by_status(log).items():
            by_status.setdefault(status, Histogram()).add(histogram)
    admitted, shed = by_status.get(200), by_status.get(503)
    goodput = (admitted.total if admitted else 0) / max(step.aggregate.duration_seconds, 1e-9)
    step.check(
        "goodput >= 90% of capacity (target)",
        goodput >= 0.9 * capacity,
        f"{goodput:,.0f} of {capacity:,.0f} rps",
    )
    shed_p99 = shed.percentile(99) / 1000 if shed else 0.0
    step.check(
        f"shed answered < {SHED_ANSWER_TARGET_MS} ms at p99 (target)",
        shed_p99 < SHED_ANSWER_TARGET_MS,
        f"p99 {shed_p99:.1f} ms over {shed.total if shed else 0} shed",
    )
    admitted_p99 = admitted.percentile(99) / 1000 if admitted else float("inf")
    step.check(
        f"admitted p99 < {ADMITTED_P99_TARGET_MS} ms (target)",
        admitted_p99 < ADMITTED_P99_TARGET_MS,
        f"p99 {admitted_p99:.1f} ms",
    )
    other = {c: n for c, n in step.aggregate.status.items() if c not in (200, 503)}
    step.check("only 200 and 503", not other, f"other statuses: {other}")


async def overload(
    ctx: Context, latency_ms: float = 20.0, multiple: float = 3.0, duration: int = 20
) -> ScenarioResult:
    """Measure capacity (closed loop), then offer `multiple` times it at a constant rate."""
    paths = ["/items/1"]
    workers = ctx.machine.cpus
    rate_per_client = 10.0  # One request every 100 ms: far above an admitted answer's time.
    result = ScenarioResult(
        "overload",
        {
            "upstream_latency_ms": latency_ms,
            "multiple": multiple,
            "duration_seconds": duration,
            "workers": workers,
        },
    )
    with mock_upstream(ctx.step_dir("upstream"), latency_ms=latency_ms) as upstream:
        base = c50k_env(ctx, upstream, C50K_CACHE_ENABLED="false", C50K_STORE_BACKEND="memory")
        unlimited = {**base, "C50K_SERVER_MAX_IN_FLIGHT": "0"}

        async def capacity_of(target: Target) -> list[Step]:
            loads = wrk_loads(
                target,
                ctx.addresses,
                256,
                paths,
                duration=ctx.duration_seconds,
                timeout=WRK_TIMEOUT_SECONDS,
            )
            step = await measure(
                ctx, target, "capacity", loads, upstream=upstream, service=unlimited
            )
            common_checks(step, want_no_errors=True)
            return [step]

        body = aggregate_body(1)
        start = partial(
            start_target, ctx, "c50k", workers, upstream, env=unlimited, ceiling_body=body
        )
        result.steps += await with_target(start, capacity_of)
        capacity = result.steps[-1].throughput
        limit = max(1, math.ceil(capacity / workers * LATENCY_TARGET_SECONDS))
        clients = max(1, math.ceil(multiple * capacity / rate_per_client))
        result.settings |= {
            "capacity_rps": round(capacity),
            "max_in_flight": limit,
            "clients": clients,
            "offered_rps": round(clients * rate_per_client),
        }
        for name in [n for n in ("c50k", "straightforward") if n in ctx.targets]:
            env = {**base, "C50K_SERVER_MAX_IN_FLIGHT": str(limit)}

            async def offer(
                target: Target, name: str = name, env: dict[str, str] = env
            ) -> list[Step]:
                workdir = ctx.step_dir(name, "overload")
                loads = h2load_loads(
                    target,
                    ctx.addresses,
                    clients,
                    paths,
                    workdir,
                    duration_seconds=duration,
                    rps=rate_per_client,
                )
                step = await measure(
                    ctx,
                    target,
                    f"{multiple:g}x capacity",
                    loads,
                    upstream=upstream,
                    service=env if name == "c50k" else {},
                )
                if name == "c50k":
                    shed_latency_checks(
                        step,
                        [load.log_file for load in loads if load.log_file is not None],
                        capacity,
                    )
                return [step]

            start = partial(start_target, ctx, name, workers, upstream, env=env, ceiling_body=body)
            result.steps += await with_target(start, offer)
        return result
