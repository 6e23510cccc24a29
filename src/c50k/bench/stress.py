"""The scenarios that push connections and load past what a closed loop of a few hundred does:
c50k (50,000 busy keep-alive connections), burst (50,000 opened at once) and overload
(an open-model rate at three times the measured capacity)."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from c50k.bench.scenarios import (
    WRK_TIMEOUT_SECONDS,
    ScenarioResult,
    common_checks,
    refresh_bound,
)
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
# A closed-loop request unanswered this long counts as an error (wrk's --timeout).
CLOSED_LOOP_TIMEOUT_SECONDS = 30
# What one load-generator process holds under the 20,000-file limit, with room to spare.
ONE_PROCESS_CONNECTIONS = 12_000
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


def _check_duration_bodies(
    ctx: Context, step: Step, warm_up: Step, *, answer_length: int, ids: int, workers: int
) -> None:
    """h2load cannot see bodies, and in a duration run its byte count also holds answers still
    arriving when it stops. The proof is the cache: wrk's body check saw only whole answers
    for these ids in the warm-up, and the upstream saw no more than the background refreshes
    (which no answer waits for), so every answer was one of those cached pairs. The
    closed-loop wrk steps check every body."""
    clean = warm_up.aggregate.error_bodies == 0
    bound = refresh_bound(ctx, ids, workers, step.aggregate.duration_seconds)
    step.check(
        "whole answers (warm-up bodies clean, upstream: refreshes only)",
        clean and step.upstream_requests is not None and step.upstream_requests <= bound,
        f"warm-up error bodies {warm_up.aggregate.error_bodies}, "
        f"upstream requests during the step {step.upstream_requests} (bound {bound})",
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
            _check_duration_bodies(
                ctx, step, warm_step, answer_length=length, ids=2 * len(ids), workers=workers
            )
            if name == "c50k":
                per = step.server.rss_per_connection(connections)
                step.check(
                    "RSS per held connection <= 8 KB (target)",
                    per is not None and per <= RSS_TARGET_BYTES_PER_CONNECTION,
                    f"{(per or 0) / 1024:.2f} KB",
                )
            closed = [
                await closed_loop_step(
                    ctx,
                    target,
                    upstream,
                    paths,
                    answer_length=length,
                    connections=connections,
                    duration=duration,
                    addresses=ctx.addresses,
                ),
                # A team's first try: one wrk process, as many connections as it can hold.
                await closed_loop_step(
                    ctx,
                    target,
                    upstream,
                    paths,
                    answer_length=length,
                    connections=min(connections, ONE_PROCESS_CONNECTIONS),
                    duration=max(1, duration // 2),
                    addresses=ctx.addresses[:1],
                ),
            ]
            return [step, *closed]

        result.steps += await each_target(
            ctx,
            upstream,
            env=env,
            ceiling_body=aggregate_body(ids[0]),
            workers=lambda _name: workers,
            use=use,
        )
        return result


async def closed_loop_step(
    ctx: Context,
    target: Target,
    upstream: Target,
    paths: list[str],
    *,
    answer_length: int,
    connections: int,
    duration: int,
    addresses: list[str],
) -> Step:
    """The load shape a team tries first: wrk's closed loop, every connection sending its next
    request as soon as the last is answered, all from the first second, no waves. wrk counts
    a request unanswered after CLOSED_LOOP_TIMEOUT_SECONDS as a socket error, so no socket
    error means every connection was answered within that time, again and again."""
    processes = "one wrk process" if len(addresses) == 1 else "wrk"
    loads = wrk_loads(
        target,
        addresses,
        connections,
        paths,
        duration=duration,
        timeout=min(CLOSED_LOOP_TIMEOUT_SECONDS, duration),
    )
    step = await measure(
        ctx, target, f"{connections} connections, closed loop ({processes})", loads,
        upstream=upstream,
    )  # fmt: skip
    common_checks(step, want_no_errors=True)
    check_bodies(step, answer_length)
    return step


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
        # Parking 50,000 requests on a slow upstream is the point here, on the defaults.
        env = c50k_env(ctx, upstream)

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


@dataclass(frozen=True)
class OverloadMode:
    """One admission configuration of the overload scenario and what it must show."""

    name: str
    # Bound on the admitted answers' p99 (None: the maximum queue time the target runs with).
    admitted_p99_ms: float | None
    shed_p99_ms: float | None  # Bound on the refusals' p99, where the mode promises one.
    recovery: bool  # Whether the recovery after the overload is measured.

    def env(self, in_flight_limit: int) -> dict[str, str]:
        if self.name == COUNT_LIMIT:
            return {"C50K_SERVER_MAX_IN_FLIGHT": str(in_flight_limit)}
        if self.name == QUEUE_TARGET:
            return {"C50K_SERVER_QUEUE_TARGET_SECONDS": str(QUEUE_TARGET_SECONDS)}
        return {}


COUNT_LIMIT = "count limit (the old rule)"
DEFAULTS = "defaults"
QUEUE_TARGET_SECONDS = 0.1
QUEUE_TARGET = "queue target 100 ms"
# Side by side in one run: the old count-based limit, the defaults (a maximum queue time), and
# an operator's queue-delay target.
OVERLOAD_MODES = (
    OverloadMode(COUNT_LIMIT, ADMITTED_P99_TARGET_MS, SHED_ANSWER_TARGET_MS, recovery=False),
    OverloadMode(DEFAULTS, None, SHED_ANSWER_TARGET_MS, recovery=False),
    OverloadMode(QUEUE_TARGET, ADMITTED_P99_TARGET_MS, None, recovery=True),
)
RECOVERY_TARGET_SECONDS = 10
GOODPUT_TARGET = 0.9


def shed_latency_checks(
    step: Step, logs: list[Path], capacity: float, mode: OverloadMode, max_queue_ms: float
) -> None:
    by_status: dict[int, Histogram] = {}
    for log in logs:
        for status, histogram in latency_by_status(log).items():
            by_status.setdefault(status, Histogram()).add(histogram)
    admitted, shed = by_status.get(200), by_status.get(503)
    goodput = (admitted.total if admitted else 0) / max(step.aggregate.duration_seconds, 1e-9)
    step.check(
        "goodput >= 90% of capacity (target)",
        goodput >= GOODPUT_TARGET * capacity,
        f"{goodput:,.0f} of {capacity:,.0f} rps",
    )
    if mode.shed_p99_ms is not None:
        shed_p99 = shed.percentile(99) / 1000 if shed else 0.0
        step.check(
            f"refusals answered < {mode.shed_p99_ms:g} ms at p99 (target)",
            shed_p99 < mode.shed_p99_ms,
            f"p99 {shed_p99:.1f} ms over {shed.total if shed else 0} refused",
        )
    admitted_p99 = admitted.percentile(99) / 1000 if admitted else float("inf")
    bound = mode.admitted_p99_ms if mode.admitted_p99_ms is not None else max_queue_ms
    step.check(
        f"admitted p99 < {bound:g} ms (target)",
        admitted_p99 < bound,
        f"p99 {admitted_p99:.1f} ms",
    )
    other = {c: n for c, n in step.aggregate.status.items() if c not in (200, 503)}
    step.check("only 200 and 503", not other, f"other statuses: {other}")


def recovery_check(step: Step, capacity: float) -> None:
    """The closed loop right after the overload: how many seconds until goodput is back to
    90% of capacity (wrk's per-second count of good answers)."""
    seconds = [ok - bad for ok, bad in step.aggregate.timeline.values()]
    recovered = next(
        (i for i, good in enumerate(seconds) if good >= GOODPUT_TARGET * capacity), None
    )
    step.check(
        f"full goodput within {RECOVERY_TARGET_SECONDS} s after the overload (target)",
        recovered is not None and recovered < RECOVERY_TARGET_SECONDS,
        f"second {recovered} of {[round(g) for g in seconds]}",
    )


async def overload(
    ctx: Context, latency_ms: float = 20.0, multiple: float = 3.0, duration: int = 20
) -> ScenarioResult:
    """Measure capacity (closed loop), then offer `multiple` times it at a constant rate, to
    the app alone and behind HAProxy, in each admission mode."""
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
        # The expensive path, two upstream calls a request: the cache would answer at once.
        base = c50k_env(ctx, upstream, C50K_CACHE_ENABLED="false", C50K_STORE_BACKEND="memory")

        async def closed(target: Target, label: str, seconds: int) -> Step:
            loads = wrk_loads(
                target, ctx.addresses, 256, paths, duration=seconds, timeout=WRK_TIMEOUT_SECONDS
            )
            return await measure(ctx, target, label, loads, upstream=upstream, service=base)

        async def capacity_of(target: Target) -> list[Step]:
            step = await closed(target, "capacity", ctx.duration_seconds)
            common_checks(step, want_no_errors=True)
            return [step]

        body = aggregate_body(1)
        start = partial(start_target, ctx, "c50k", workers, upstream, env=base, ceiling_body=body)
        result.steps += await with_target(start, capacity_of)
        capacity = result.steps[-1].throughput
        limit = max(1, math.ceil(capacity / workers * LATENCY_TARGET_SECONDS))
        clients = max(1, math.ceil(multiple * capacity / rate_per_client))
        result.settings |= {
            "capacity_rps": round(capacity),
            "max_in_flight (count limit)": limit,
            "clients": clients,
            "offered_rps": round(clients * rate_per_client),
        }
        runs = [(name, mode) for name in ("c50k", "c50k-haproxy") for mode in OVERLOAD_MODES]
        if "straightforward" in ctx.targets:
            runs.append(("straightforward", OVERLOAD_MODES[1]))
        for name, mode in runs:
            env = {**base, **mode.env(limit)}

            async def offer(
                target: Target,
                name: str = name,
                mode: OverloadMode = mode,
                env: dict[str, str] = env,
            ) -> list[Step]:
                workdir = ctx.step_dir(name, mode.name.replace(" ", "-"), "overload")
                loads = h2load_loads(
                    target,
                    ctx.addresses,
                    clients,
                    paths,
                    workdir,
                    duration_seconds=duration,
                    rps=rate_per_client,
                )
                label = f"{multiple:g}x capacity, {mode.name}"
                step = await measure(
                    ctx, target, label, loads, upstream=upstream,
                    service=env if name.startswith("c50k") else {},
                )  # fmt: skip
                steps = [step]
                if name.startswith("c50k"):
                    logs = [load.log_file for load in loads if load.log_file is not None]
                    max_queue_ms = ctx.settings.server.max_queue_seconds * 1000
                    shed_latency_checks(step, logs, capacity, mode, max_queue_ms)
                    if mode.recovery:
                        after = await closed(target, f"after the overload, {mode.name}", 12)
                        recovery_check(after, capacity)
                        steps.append(after)
                return steps

            start = partial(start_target, ctx, name, workers, upstream, env=env, ceiling_body=body)
            result.steps += await with_target(start, offer)
        return result
