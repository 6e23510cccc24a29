"""The classic user scenario under locust: GET /items/1 and GET /health, 1-5 s think time.

locust reports percentiles, not samples: the step's histogram is rebuilt from its percentile
columns (each column's share of requests at its value), so its percentiles are locust's own.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections import Counter
from pathlib import Path

from c50k.bench.results import Aggregate, GeneratorRun, Histogram
from c50k.bench.runner import Context, Step, progress, with_target
from c50k.bench.sampling import ServerFigures, sample, sample_every
from c50k.bench.scenarios import ScenarioResult
from c50k.bench.targets import Target, mock_upstream
from c50k.bench.targets_setup import c50k_env, start_target
from c50k.bench.wrk import run_bounded

PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99, 99.9, 99.99, 100)


def histogram_from_percentiles(row: dict[str, str]) -> Histogram:
    total = int(row["Request Count"])
    histogram = Histogram()
    below = 0.0
    for p in PERCENTILES:
        value = row.get(f"{p:g}%", "N/A")
        if value in ("N/A", ""):
            continue
        share = round(total * p / 100 - below)
        histogram.counts[int(float(value) * 1000)] += max(0, share)
        below += max(0, share)
    return histogram


def parse_locust_csv(prefix: Path, users: int, duration: int, command: list[str]) -> GeneratorRun:
    with open(f"{prefix}_stats.csv", newline="") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    total = rows["Aggregated"]
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    return GeneratorRun(
        tool="locust",
        command=command,
        url=command[command.index("--host") + 1],
        connections=users,
        duration_seconds=float(duration),
        requests=requests,
        # locust tells failures, not their statuses; 0 stands for "failed" here.
        status=Counter({200: requests - failures, 0: failures}),
        latency=histogram_from_percentiles(total),
        raw_output=Path(f"{prefix}_stats.csv").read_text(),
    )


async def locust(ctx: Context) -> ScenarioResult:
    users = ctx.connections or 200
    # Think time is 1-5 s: a run needs several of them for every user.
    duration = max(20, 2 * ctx.duration_seconds)
    result = ScenarioResult(
        "locust", {"users": users, "duration_seconds": duration, "think_time_seconds": [1, 5]}
    )
    with mock_upstream(ctx.step_dir("upstream")) as upstream:
        env = c50k_env(ctx, upstream)

        async def use(target: Target) -> list[Step]:
            workdir = ctx.step_dir("c50k", "locust")
            prefix = workdir / "locust"
            locustfile = ctx.baselines_dir.parent / "locustfile.py"
            command = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(locustfile),
                "--host",
                target.base_url,
                "--headless",
                "--users",
                str(users),
                "--spawn-rate",
                str(max(1, users // 5)),
                "--run-time",
                f"{duration}s",
                "--csv",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ]
            figures = ServerFigures(idle=sample(target.server_pids(), 0.0))
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_every(1.0, target.server_pids, figures, stop))
            try:
                with progress(ctx, "c50k: locust", duration):
                    await run_bounded(command, duration + 30, workdir)
            finally:
                stop.set()
                await sampler
            run = await asyncio.to_thread(parse_locust_csv, prefix, users, duration, command)
            step = Step("c50k", f"{users} users", users, Aggregate([run]), figures, service=env)
            step.check("no failures", run.status[0] == 0, f"{run.status[0]} failures")
            step.check("answers", run.requests > 0, f"{run.requests} requests")
            return [step]

        result.steps += await with_target(
            lambda: start_target(
                ctx, "c50k", ctx.machine.cpus, upstream, env=env, ceiling_body=b"{}"
            ),
            use,
        )
        return result
