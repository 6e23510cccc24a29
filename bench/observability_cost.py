"""What do metrics, request ids and JSON logs cost a cached GET /items/{id}?

    .venv/bin/python bench/observability_cost.py [--rounds 6] [--duration 5] [--connections 128]

Starts the mock upstream once and two `c50k serve` instances side by side, on free loopback
ports with the same settings but for observability: `on` (the defaults: metrics, request ids,
JSON logs) and `off` (C50K_METRICS_ENABLED=false, C50K_LOG_REQUEST_ID=false). Both are warmed,
then each round runs one wrk against each instance *at the same time*: the two share the
cores, and whatever else runs on the machine slows both alike, so the ratio of their
throughputs is the ratio of their CPU per request, even on a busy machine where one run after
the other would measure the neighbours. `c50k bench hot --targets c50k-bare,c50k` measures the
same one after the other. Load goes to 127.0.0.1 only; every process started is stopped by its
PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from c50k.bench.targets import Target, mock_upstream, posts_template, start_c50k
from c50k.stack.process import free_port

OFF = {"C50K_METRICS_ENABLED": "false", "C50K_LOG_REQUEST_ID": "false"}
RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")


def wrk(url: str, connections: int, seconds: int) -> subprocess.Popen[str]:
    argv = [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rps(process: subprocess.Popen[str], seconds: int) -> float:
    out, _ = process.communicate(timeout=seconds + 30)
    found = RPS.search(out)
    if found is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--on", action="append", default=[], metavar="NAME=VALUE",
        help="A setting of the `on` instance, e.g. C50K_LOG_REQUEST_ID=false (metrics alone).",
    )  # fmt: skip
    args = parser.parse_args()
    on = dict(item.split("=", 1) for item in args.on)
    workdir = Path(tempfile.mkdtemp(prefix="c50k-observability-cost-"))
    with mock_upstream(workdir / "upstream") as upstream:
        targets: dict[str, Target] = {}
        try:
            for name, extra in (("on", on), ("off", OFF)):
                env = {
                    "C50K_UPSTREAM_URL": posts_template(upstream),
                    "C50K_STORE_BACKEND": "memory",
                    "C50K_CACHE_TTL_SECONDS": "3600",
                    "C50K_SERVER_DRAIN_SECONDS": "0",
                    "C50K_LOG_LEVEL": "warning",
                    "C50K_METRICS_PORT": str(free_port()),
                    **extra,
                }
                targets[name] = start_c50k(
                    workdir / name, free_port(), ["127.0.0.1"], args.workers, env
                )
            urls = {name: f"{t.base_url}/items/1" for name, t in targets.items()}
            for url in urls.values():  # Warm-up: item 1 and 2 into every worker's cache.
                rps(wrk(url, 16, 2), 2)
            ratios = []
            print(f"round  on rps   off rps   on/off   ({args.connections} connections each)")
            for i in range(args.rounds):
                # Which wrk starts first alternates: an `off` against `off` run (both instances
                # alike) measured 0.979 with `on` always first, within its spread but not 1.
                order = list(urls.items())[:: 1 if i % 2 == 0 else -1]
                running = {n: wrk(u, args.connections, args.duration) for n, u in order}
                got = {n: rps(p, args.duration) for n, p in running.items()}
                ratios.append(got["on"] / got["off"])
                print(f"{i + 1:>5}  {got['on']:>7,.0f}  {got['off']:>8,.0f}   {ratios[-1]:.3f}")
            print(
                f"median on/off {statistics.median(ratios):.3f} "
                f"(min {min(ratios):.3f}, max {max(ratios):.3f}); "
                f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
            )
        finally:
            for target in targets.values():
                target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
