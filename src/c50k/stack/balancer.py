"""The load balancer of the local stack: HAProxy or nginx from the system's binaries, with a
configuration rendered (c50k render) from the stack's settings into its state directory."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from c50k.render.files import Placement, binary, render
from c50k.settings import Settings
from c50k.stack.process import ManagedProcess, http_ok
from c50k.stack.state import ServiceRecord, StackError

if TYPE_CHECKING:
    from c50k.stack.stack import Launch, SettingsDoc

READY_TIMEOUT = 30.0
Balancer = Literal["haproxy", "nginx"]
CONFIG_FILES: dict[Balancer, str] = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf"}


def lb_settings(doc: SettingsDoc) -> Settings:
    """The settings the stack wrote so far, over the C50K_* environment and the defaults."""
    fields: dict[str, Any] = dict(doc)
    return Settings(**fields)


def placement(runtime_dir: Path) -> Placement:
    return Placement(
        runtime_dir=str(runtime_dir.resolve()),
        error_log=str((runtime_dir / "error.log").resolve()),
        pidfile=str((runtime_dir / "haproxy.pid").resolve()),
        # As root, nginx's workers would run as nobody, who cannot enter a private state dir.
        user="root" if os.geteuid() == 0 else None,
        source="the local stack's c50k.toml",
    )


def argv(kind: Balancer, config: Path) -> list[str]:
    if kind == "haproxy":
        # -W: master-worker (SIGUSR2 reloads); -db: stay in the foreground, so the recorded PID
        # is the master's.
        return [binary("haproxy"), "-W", "-db", "-f", str(config)]
    prefix = str(config.parent.resolve())
    return [binary("nginx"), "-p", prefix, "-c", str(config.resolve()), "-e", "stderr",
            "-g", "daemon off;"]  # fmt: skip


def launch_balancer(kind: Balancer, settings: Settings, runtime_dir: Path) -> ManagedProcess:
    """Render the configuration into `runtime_dir`, start the binary, wait until it forwards
    GET /health on every address it listens on."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    config = runtime_dir / CONFIG_FILES[kind]
    config.write_text(render(kind, settings, placement(runtime_dir)))
    process = ManagedProcess(kind, argv(kind, config), runtime_dir / f"{kind}.log").start()
    urls = [f"http://{bind}/health" for bind in settings.lb.binds]
    try:
        process.wait_until(lambda: all(http_ok(u) for u in urls), READY_TIMEOUT, "forwarding")
    except BaseException:
        process.stop()
        raise
    return process


def start_balancer(kind: Balancer, settings: Settings, runtime_dir: Path) -> ServiceRecord:
    process = launch_balancer(kind, settings, runtime_dir)
    process.detach()
    lb = settings.lb
    return ServiceRecord.of(
        process,
        kind,
        lb.host.split(",")[0],
        lb.port,
        # nginx: SIGQUIT finishes requests in flight; HAProxy: SIGUSR1 is its soft stop.
        stop_signal=signal.SIGQUIT if kind == "nginx" else signal.SIGUSR1,
        stop_timeout=15.0,
        extra={"config": str(process.log_path.parent / CONFIG_FILES[kind])},
    )


def start_tier(launch: Launch) -> None:
    kind = launch.plan.lb
    if kind is None:
        return
    if "instances" not in launch.settings.get("lb", {}):
        raise StackError(f"--lb {kind} needs app instances (--app-instances N)")
    lb = launch.group("lb")
    lb["host"] = launch.plan.host
    lb["port"] = launch.ports.take()
    launch.state.add(start_balancer(kind, lb_settings(launch.settings), launch.state_dir / kind))
