"""`c50k stack up | status | down`."""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from c50k.stack.state import StackError


class Balancer(StrEnum):
    haproxy = "haproxy"
    nginx = "nginx"


stack_app = typer.Typer(
    help="The local stack: PostgreSQL shards with streaming replicas (and PgBouncer), a Redis "
    "cache, app instances and a load balancer, started from the system's binaries in one "
    "state directory.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where the stack keeps its data, logs and state.")
]


@stack_app.command("up")
def stack_up(
    *,
    state_dir: StateDir = Path("var/stack"),
    shards: Annotated[
        int, typer.Option(min=0, max=64, help="PostgreSQL shards (0: the apps use SQLite).")
    ] = 1,
    replicas: Annotated[int, typer.Option(min=0, max=8, help="Streaming replicas per shard.")] = 1,
    pgbouncer: Annotated[
        bool, typer.Option(help="PgBouncer (transaction mode) before each primary.")
    ] = False,
    app_instances: Annotated[
        int, typer.Option(min=0, max=64, help="App instances (c50k serve), each on its port.")
    ] = 0,
    lb: Annotated[
        Balancer | None, typer.Option(help="A load balancer in front of the app instances.")
    ] = None,
    base_port: Annotated[
        int | None, typer.Option(min=1024, max=65000, help="First port (default: free ports).")
    ] = None,
    redis: Annotated[
        bool, typer.Option("--redis/--no-redis", help="Start redis-server as the shared cache.")
    ] = True,
) -> None:
    """Start the stack, wait until every replica streams, and write the settings file.

    A stack that was brought down is started again on its data; a different shape of shards
    needs `c50k stack down --purge` first.
    """
    from c50k.stack.stack import StackPlan, up  # noqa: PLC0415 -- keep --help fast.

    plan = StackPlan(
        shards=shards,
        replicas=replicas,
        pgbouncer=pgbouncer,
        redis=redis,
        app_instances=app_instances,
        lb=None if lb is None else lb.value,
        base_port=base_port,
    )
    try:
        state = up(plan, state_dir)
    except StackError as exc:
        typer.echo(f"c50k stack: {exc}", err=True)
        raise typer.Exit(1) from exc
    for record in state.services:
        typer.echo(f"{record.name:<20} {record.kind:<10} {record.address:<22} pid {record.pid}")
    typer.echo(f"\nsettings: {state.settings_path}")
    typer.echo(f"serve it:  C50K_SETTINGS_FILE={state.settings_path} c50k serve")


@stack_app.command("status")
def stack_status(state_dir: StateDir = Path("var/stack")) -> None:
    """Each process of the stack: its address, PID and whether it runs (exit 1 if one is down)."""
    from c50k.stack.stack import status_rows  # noqa: PLC0415

    rows = status_rows(state_dir)
    if not rows:
        typer.echo(f"no stack in {state_dir}")
        raise typer.Exit(1)
    for record, running in rows:
        state = "running" if running else "STOPPED"
        typer.echo(f"{record.name:<20} {record.kind:<10} {record.address:<22} {state}")
    if not all(running for _record, running in rows):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down(
    state_dir: StateDir = Path("var/stack"),
    purge: Annotated[bool, typer.Option(help="Also delete the data and logs.")] = False,
) -> None:
    """Stop every process of the stack, by the PID it recorded, the last started first."""
    from c50k.stack.stack import down  # noqa: PLC0415

    stopped = down(state_dir)
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    if purge and state_dir.exists():
        shutil.rmtree(state_dir)
        typer.echo(f"deleted {state_dir}")
