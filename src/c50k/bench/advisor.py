"""The tuning advisor: settings recommended from what a run measured, each with its reason."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from c50k.settings import RESERVED_FILES_PER_WORKER, connection_budget_for

if TYPE_CHECKING:
    from c50k.bench.runner import Context
    from c50k.bench.scenarios import ScenarioResult

# Admitted requests should finish within this; it turns capacity into an in-flight limit.
LATENCY_TARGET_SECONDS = 0.1
# Headroom over the measured need, for bursts and uneven spread over workers.
HEADROOM = 1.5
# Workers per connection budget: a storm of connects does not spread evenly (targets_setup).
SPREAD_HEADROOM = 2.0


@dataclass(frozen=True)
class Advice:
    setting: str
    value: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "value": self.value, "reason": self.reason}


def workers_to_hold(connections: int, per_worker: int, cpus: int) -> int:
    """Enough workers to hold `connections`, with headroom for their uneven spread; never
    fewer than one per core."""
    return max(cpus, math.ceil(connections * SPREAD_HEADROOM / per_worker))


def advise(ctx: Context, result: ScenarioResult) -> list[Advice]:
    machine = ctx.machine
    pool = ctx.settings.upstream.max_connections
    budget = connection_budget_for(machine.nofile_soft, pool)
    advice = [
        Advice(
            "C50K_SERVER_WORKERS",
            str(machine.cpus),
            f"one asyncio worker per core ({machine.cpus} here) for throughput; "
            f"add workers only to hold more connections",
        ),
        Advice(
            "C50K_SERVER_MAX_CONNECTIONS_PER_WORKER",
            str(budget),
            f"open-file limit {machine.nofile_soft} minus the upstream pool ({pool}) "
            f"minus {RESERVED_FILES_PER_WORKER} reserved files",
        ),
    ]
    connections = int(result.settings.get("connections", 0))
    if connections > machine.cpus * budget:
        need = workers_to_hold(connections, budget, machine.cpus)
        advice.append(
            Advice(
                "C50K_SERVER_WORKERS (to hold connections)",
                str(need),
                f"{connections} connections at {budget} per worker, x{SPREAD_HEADROOM:g} for "
                f"their uneven spread over workers in a storm of connects",
            )
        )
    advice += _upstream_pool(ctx, result)
    if result.name == "overload":
        advice.append(
            Advice(
                "C50K_SERVER_QUEUE_TARGET_SECONDS",
                f"{LATENCY_TARGET_SECONDS:g}",
                "with a latency objective: workers shed early to keep admitted requests near "
                "it (the overload steps show goodput and p99 in each admission mode)",
            )
        )
    advice += _bound(ctx, result)
    return advice


def _upstream_pool(ctx: Context, result: ScenarioResult) -> list[Advice]:
    """Little's law on the fan-out steps: calls in flight = rate x latency."""
    if result.name != "fanout":
        return []
    needs = []
    for step in result.steps:
        if step.target != "c50k" or not step.label.endswith("ms upstream"):
            continue
        latency = float(step.label.split(" ")[0]) / 1000
        p50 = step.aggregate.latency.percentile(50) / 1e6
        per_worker = step.throughput * 2 * max(latency, p50) / ctx.machine.cpus
        needs.append(math.ceil(per_worker * HEADROOM))
    if not needs:
        return []
    return [
        Advice(
            "C50K_UPSTREAM_MAX_CONNECTIONS",
            str(max(*needs, 16)),
            "upstream calls in flight per worker at the measured rate and latency, "
            f"x{HEADROOM} headroom",
        )
    ]


def _bound(ctx: Context, result: ScenarioResult) -> list[Advice]:
    """What capped the run: a named machine limit, else the CPU when it was saturated."""
    notes = [Advice("bound", limit.setting, limit.problem) for limit in ctx.limits]
    for step in result.steps:
        if step.target != "c50k" or step.aggregate.duration_seconds <= 0:
            continue
        busy = step.server.cpu_seconds() / step.aggregate.duration_seconds
        if busy >= 0.8 * ctx.machine.cpus:
            notes.append(
                Advice(
                    "bound",
                    "CPU",
                    f"{step.label}: the service used {busy:.1f} of "
                    f"{ctx.machine.cpus} cores; more throughput needs more cores "
                    f"or less work per request",
                )
            )
            break
    return notes
