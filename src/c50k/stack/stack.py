"""`c50k stack up | status | down`: the whole architecture on one machine, from the system's
binaries, in one state directory. Each tier has its own module (postgres.py, redis.py, ...);
this one orders them, records every process, and writes the settings file the service reads."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomli_w

from c50k.stack.process import free_port
from c50k.stack.state import ServiceRecord, StackError, StackState

DEFAULT_STATE_DIR = Path("var/stack")

# The settings document the stack writes, group by group, as TOML (see settings.py).
SettingsDoc = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class StackPlan:
    shards: int = 1
    replicas: int = 1
    redis: bool = False
    pgbouncer: bool = False
    app_instances: int = 0
    lb: Literal["haproxy", "nginx"] | None = None
    host: str = "127.0.0.1"
    # Ports base_port, base_port + 1, ... in start order; None: free ports from the kernel.
    base_port: int | None = None


class Ports:
    def __init__(self, host: str, base_port: int | None) -> None:
        self.host = host
        self._next = base_port

    def take(self) -> int:
        if self._next is None:
            return free_port(self.host)
        port = self._next
        self._next += 1
        return port


@dataclass
class Launch:
    """What each tier's start function gets: where to put its files, which ports to take, the
    record of the stack, and the settings document to add its own group to."""

    plan: StackPlan
    state: StackState
    ports: Ports
    settings: SettingsDoc

    @property
    def state_dir(self) -> Path:
        return self.state.state_dir

    def group(self, name: str) -> dict[str, Any]:
        return self.settings.setdefault(name, {})


# Tiers in start order; `down` stops them in reverse. Each start function records its
# processes with `launch.state.add(...)` as soon as they run, and its settings in
# `launch.settings`. Later tiers (the apps, the load balancer) read the settings file.
Tier = Callable[[Launch], None]


def _tiers(plan: StackPlan) -> list[Tier]:
    # Each tier's module loads only when the plan uses it.
    from c50k.stack import apps, balancer, pgbouncer, postgres, redis  # noqa: PLC0415

    tiers: list[Tier] = []
    if plan.shards > 0:
        tiers.append(postgres.start_tier)
        if plan.pgbouncer:
            tiers.append(pgbouncer.start_tier)
    if plan.redis:
        tiers.append(redis.start_tier)
    if plan.app_instances > 0:
        tiers.append(apps.start_tier)
    if plan.lb is not None:
        tiers.append(balancer.start_tier)
    return tiers


def write_settings(state: StackState, settings: SettingsDoc) -> Path:
    path = state.settings_path
    state.state_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tomli_w.dumps(settings).encode())
    return path


def up(plan: StackPlan, state_dir: Path = DEFAULT_STATE_DIR) -> StackState:
    state = StackState.load(state_dir)
    if running := [s.name for s in state.services if s.running()]:
        raise StackError(
            f"a stack already runs in {state_dir} ({', '.join(running)}); "
            "run `c50k stack down` first"
        )
    state.services.clear()
    launch = Launch(plan, state, Ports(plan.host, plan.base_port), {})
    try:
        for tier in _tiers(plan):
            tier(launch)
            write_settings(state, launch.settings)
    except BaseException:
        state.stop_all()
        raise
    write_settings(state, launch.settings)
    return state


@contextlib.contextmanager
def temporary_stack(plan: StackPlan) -> Iterator[StackState]:
    """A stack in a new temporary directory, stopped and deleted on exit: the tests' and the
    benchmarks' way to run the real tiers."""
    state_dir = Path(tempfile.mkdtemp(prefix="c50k-stack-"))
    try:
        yield up(plan, state_dir)
    finally:
        down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    return StackState.load(state_dir).stop_all()


def settings_env(state: StackState) -> dict[str, str]:
    """The environment that points `c50k` at this stack's settings file."""
    return {**os.environ, "C50K_SETTINGS_FILE": str(state.settings_path.resolve())}


def status_rows(state_dir: Path = DEFAULT_STATE_DIR) -> list[tuple[ServiceRecord, bool]]:
    return [(s, s.running()) for s in StackState.load(state_dir).services]
