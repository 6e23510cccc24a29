"""App instances for the local stack: `app_instances` times `c50k serve`, each on its own port,
all reading the stack's settings file. The load balancer tier puts them in its inventory."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from c50k.settings import SETTINGS_FILE_ENV, instance_settings
from c50k.stack.process import ManagedProcess, http_ok
from c50k.stack.state import ServiceRecord

if TYPE_CHECKING:
    from c50k.stack.stack import Launch

READY_TIMEOUT = 60.0


def instance_process(
    name: str, host: str, port: int, settings_path: Path, log_path: Path, *, metrics_port: int
) -> ManagedProcess:
    """One `c50k serve` on host:port with the stack's settings (C50K_* variables still win),
    its metrics exporter on a port of its own."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", "c50k", "serve", "--host", host, "--port", str(port)],
        log_path,
        env={
            **os.environ,
            SETTINGS_FILE_ENV: str(settings_path.resolve()),
            "C50K_METRICS_PORT": str(metrics_port),
        },
    )


def start_instance(
    process: ManagedProcess, host: str, port: int, settings_path: Path
) -> ServiceRecord:
    process.start()
    process.wait_until(lambda: http_ok(f"http://{host}:{port}/ready"), READY_TIMEOUT, "ready")
    server = instance_settings(settings_path).server
    return ServiceRecord.of(
        process,
        "app",
        host,
        port,
        stop_signal=signal.SIGTERM,  # The drain: /ready 503 first, then in-flight requests.
        stop_timeout=server.stop_seconds,
    )


def start_tier(launch: Launch) -> None:
    from c50k.stack.stack import write_settings  # noqa: PLC0415 -- stack.py imports the tiers.

    plan = launch.plan
    if "postgres" not in launch.settings:
        # No PostgreSQL tier: the instances share one SQLite file in the state directory.
        launch.group("store").setdefault("backend", "sqlite")
        launch.group("store")["sqlite_path"] = str((launch.state_dir / "items.sqlite3").resolve())
    # Only the load balancer's X-Forwarded-For is believed; it connects from the stack's host.
    launch.group("server")["forwarded_allow_ips"] = plan.host
    settings_path = write_settings(launch.state, launch.settings)
    addresses = []
    for index in range(plan.app_instances):
        port = launch.ports.take()
        name = f"app-{index}"
        log_path = launch.state_dir / "apps" / f"{name}.log"
        metrics_port = launch.ports.take()
        process = instance_process(
            name, plan.host, port, settings_path, log_path, metrics_port=metrics_port
        )
        try:
            record = start_instance(process, plan.host, port, settings_path)
        except BaseException:
            process.stop()
            raise
        record.extra["metrics_port"] = metrics_port
        launch.state.add(record)
        process.detach()
        addresses.append(record.address)
    launch.group("lb")["instances"] = ",".join(addresses)
