"""The targets behind a load balancer: c50k instances with HAProxy or nginx (optionally its
micro-cache) in front, rendered from the same settings as `c50k render` and the local stack.
The balancer listens on the benchmark's loopback addresses; the instances on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from c50k.bench.targets import Target, start_c50k
from c50k.inventory import Instance, format_instances
from c50k.render.files import lb_processes
from c50k.settings import LbSettings, Settings
from c50k.stack.balancer import Balancer, launch_balancer
from c50k.stack.process import free_port

MAX_INSTANCES = 3
# A benchmark holds every request in flight at once; HAProxy queues those beyond the
# instances' maxconn, and a queued request must not time out while the run drains the queue.
BENCH_QUEUE_SECONDS = 60.0
BENCH_CONNECT_SECONDS = 10.0
# The load generators share the two cores with the balancer and the instances: while 50,000
# connections were opened, some first requests reached the balancer more than 5 s after it
# had accepted their connection, and the 5 s default cut them off as slow clients (2,212
# answers 408 from HAProxy in one run, even with 250 clients per h2load thread). Slow clients
# are tested at the default (tests/integration/test_edge_limits.py); this measures holding
# connections.
BENCH_REQUEST_SECONDS = 30.0


@dataclass(frozen=True)
class EdgeTarget:
    balancer: Balancer
    microcache: bool = False


EDGE_TARGETS = {
    "c50k-haproxy": EdgeTarget("haproxy"),
    "c50k-nginx": EdgeTarget("nginx"),
    "c50k-nginx-microcache": EdgeTarget("nginx", microcache=True),
}


def edge_settings(
    edge: EdgeTarget, instances: list[Instance], addresses: list[str], port: int, connections: int
) -> Settings:
    lb = LbSettings(
        instances=format_instances(instances),
        host=",".join(addresses),
        port=port,
        connections=connections,
        microcache=edge.microcache,
        queue_timeout_seconds=BENCH_QUEUE_SECONDS,
        # 50,000 connections opened in waves reach the instances faster than a busy worker
        # accepts them; a 2 s connect timeout made nginx mark every instance failed (502).
        connect_timeout_seconds=BENCH_CONNECT_SECONDS,
        server_timeout_seconds=BENCH_QUEUE_SECONDS,
        request_timeout_seconds=BENCH_REQUEST_SECONDS,
    )
    return Settings(lb=lb)


def start_edge(
    name: str,
    workdir: Path,
    port: int,
    addresses: list[str],
    *,
    workers: int,
    env: Mapping[str, str],
    connections: int,
) -> Target:
    """`workers` split over up to three instances, then the balancer; one Target for both, so
    sampling covers every process and stopping takes the balancer down first."""
    edge = EDGE_TARGETS[name]
    count = min(MAX_INSTANCES, workers)
    per_instance = math.ceil(workers / count)
    apps: list[Target] = []
    try:
        for _ in range(count):
            # Each instance its own metrics exporter port, as on separate machines.
            own = {**env, "C50K_METRICS_PORT": str(free_port())}
            apps.append(start_c50k(workdir, free_port(), ["127.0.0.1"], per_instance, own))
        instances = [Instance("127.0.0.1", app.port) for app in apps]
        settings = edge_settings(edge, instances, addresses, port, connections)
        _maxconn, needed = lb_processes(settings)
        # HAProxy holds about nofile/2 clients per process; more share the port (SO_REUSEPORT).
        copies = needed if edge.balancer == "haproxy" else 1
        balancers = [
            launch_balancer(edge.balancer, settings, workdir / f"{edge.balancer}-{i}")
            for i in range(copies)
        ]
    except BaseException:
        for app in apps:
            app.stop()
        raise
    # Target.stop goes last to first: the balancers, then the instances.
    processes = [p for app in apps for p in app.processes] + balancers
    return Target(name, f"http://{addresses[0]}:{port}", port, list(addresses), processes)
